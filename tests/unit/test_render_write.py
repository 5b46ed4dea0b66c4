"""The atomic writer: private modes, no partial file after a crash, only-if-missing files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ibgwd.render.render import RenderedFile
from ibgwd.render.write import OsFileOps, redacted_text, write_files


class CrashError(Exception):
    """Stands in for the process dying at a given system call."""


class CrashingOps(OsFileOps):
    """Real file operations, except that one named call fails (after recording modes)."""

    def __init__(self, fail: str) -> None:
        self.fail = fail
        self.temp_modes: list[int] = []

    def open(self, path: str, flags: int, mode: int) -> int:
        fd = super().open(path, flags, mode)
        if flags & os.O_CREAT:
            self.temp_modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd

    def write(self, fd: int, data: bytes) -> int:
        if self.fail == "write":  # half the data reaches the disk, then the crash
            os.write(fd, data[: len(data) // 2])
            raise CrashError("write")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.fail == "fsync":
            raise CrashError("fsync")
        super().fsync(fd)

    def fchmod(self, fd: int, mode: int) -> None:
        if self.fail == "fchmod":
            raise CrashError("fchmod")
        super().fchmod(fd, mode)

    def replace(self, src: str, dst: str) -> None:
        if self.fail == "replace":
            raise CrashError("replace")
        super().replace(src, dst)


def secret_file(path: Path, text: str) -> RenderedFile:
    return RenderedFile(path, text, 0o600, True, False, redacted="IbPassword=<redacted>\n")


def test_secret_file_is_created_0600_with_parents_0700(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even a permissive umask must not widen anything
    try:
        target = tmp_path / "run" / "ibc" / "config-live.ini"
        assert write_files([secret_file(target, "IbPassword=x\n")]) == [target]
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert target.read_text() == "IbPassword=x\n"
    assert sorted(os.listdir(target.parent)) == ["config-live.ini"]


@pytest.mark.parametrize("fail", ["write", "fsync", "fchmod", "replace"])
def test_crash_mid_write_keeps_the_old_file_and_leaves_no_partial_file(
    tmp_path: Path, fail: str
) -> None:
    target = tmp_path / "config-live.ini"
    write_files([secret_file(target, "IbPassword=old\n")])
    ops = CrashingOps(fail)
    with pytest.raises(CrashError):
        write_files([secret_file(target, "IbPassword=new-and-longer\n" * 100)], ops=ops)
    assert target.read_text() == "IbPassword=old\n"
    assert os.listdir(tmp_path) == ["config-live.ini"]
    assert ops.temp_modes == [0o600]  # the temporary file was private from its creation


def test_leftover_temporary_file_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "config-live.ini"
    (tmp_path / ".config-live.ini.0123456789ab.tmp").write_text("IbPassword=half")
    (tmp_path / "unrelated.tmp").write_text("keep")
    write_files([secret_file(target, "IbPassword=x\n")])
    assert sorted(os.listdir(tmp_path)) == ["config-live.ini", "unrelated.tmp"]


def test_rewrite_replaces_content_and_tightens_mode(tmp_path: Path) -> None:
    target = tmp_path / "config-live.ini"
    target.write_text("stale")
    target.chmod(0o644)
    write_files([secret_file(target, "fresh\n")])
    assert target.read_text() == "fresh\n" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_only_if_missing_file_is_written_once_and_then_kept(tmp_path: Path) -> None:
    target = tmp_path / "settings" / "jts.ini"
    first = RenderedFile(target, "TimeZone=Etc/UTC\n", 0o600, False, True)
    second = RenderedFile(target, "TimeZone=Europe/Paris\n", 0o600, False, True)
    assert write_files([first]) == [target]
    assert write_files([second]) == []
    assert target.read_text() == "TimeZone=Etc/UTC\n"
    assert os.listdir(target.parent) == ["jts.ini"]


def test_owner_is_applied_to_files_and_created_directories(tmp_path: Path) -> None:
    uid, gid = os.getuid(), os.getgid()
    target = tmp_path / "new" / "config-paper.ini"
    write_files([secret_file(target, "x\n")], uid=uid, gid=gid)
    assert (target.stat().st_uid, target.parent.stat().st_gid) == (uid, gid)


def test_redacted_text_never_shows_a_secret_file_without_a_redacted_version() -> None:
    bare = RenderedFile(Path("/x"), "IbPassword=hunter2\n", 0o600, True, False)
    assert "hunter2" not in redacted_text(bare)
    assert "hunter2" not in repr(bare)
    plain = RenderedFile(Path("/y"), "TimeZone=Etc/UTC\n", 0o600, False, True)
    assert redacted_text(plain) == "TimeZone=Etc/UTC\n"
