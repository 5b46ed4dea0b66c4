"""install-gateway: plan functions and the all-or-nothing install, with in-process fakes."""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

from ibgwd.errors import InstallError
from ibgwd.install import ChecksumError, Component, DownloadError, Layout, current_version, main
from ibgwd.install import run as install_run
from ibgwd.install.fetch import NotFoundError, TtyProgress, format_progress
from ibgwd.install.installer import (
    NotAnInstallerError,
    read_version,
    sfx_length,
    version_from_params,
)
from ibgwd.install.plan import (
    Arch,
    Channel,
    UnverifiedError,
    UsageError,
    arch_for_machine,
    check_prefix,
    check_sha256,
    check_version,
    gateway_installer_url,
    gateway_version_url,
    ibc_zip_url,
    parse_checksum_file,
    parse_gateway_version_json,
    version_from_filename,
)
from ibgwd.install.runner import harden_tree
from ibgwd.install.transaction import NoHooks, check_prefix_safe, extract_ibc

# --- fakes -----------------------------------------------------------------------------------


class FakeRunner:
    """Does what IB's installer does with ``-q -dir DIR``, in-process; records the calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Path, Path]] = []
        self.fail = fail

    def run(self, installer: Path, target: Path) -> None:
        self.calls.append((installer, target))
        (target / "jars").mkdir(parents=True)
        (target / "jars" / "twslaunch.jar").write_bytes(installer.read_bytes())
        (target / ".install4j").mkdir()
        (target / ".install4j" / "inst_jre.cfg").write_text(f"{target}/jre\n")
        (target / "ibgateway.vmoptions").write_text("-Xmx768m\n")
        if self.fail:
            raise InstallError("IB Gateway installer exited with status 1: boom")


class FakeFetcher:
    """Serves URLs from a dict; anything else is a 404. Records every URL asked for."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def _get(self, url: str) -> bytes:
        self.asked.append(url)
        if url not in self.pages:
            raise NotFoundError(f"{url}: not found (HTTP 404)")
        return self.pages[url]

    def read_text(self, url: str) -> str:
        return self._get(url).decode()

    def download(self, url: str, dest: BinaryIO, progress: object = None) -> None:
        dest.write(self._get(url))


class RaiseAt:
    def __init__(self, step: str) -> None:
        self.step = step
        self.seen: list[str] = []

    def checkpoint(self, step: str) -> None:
        self.seen.append(step)
        if step == self.step:
            raise KeyboardInterrupt(f"interrupted at {step}")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def checkpoint(self, step: str) -> None:
        self.seen.append(step)


def ibc_zip_bytes(version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("IBC.jar", b"jar " + version.encode())
        z.writestr("version", version + "\n")
        z.writestr("scripts/ibcstart.sh", "#!/bin/sh\necho fake ibc\n")
        z.writestr("config.ini", "IbLoginId=\n")
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    inst = tmp_path / "ibgateway-10.30.1t-standalone-linux-x64.sh"
    inst.write_bytes(b"#!/bin/sh\n# installer 10.30.1t\n")
    inst2 = tmp_path / "ibgateway-10.37.1o-standalone-linux-x64.sh"
    inst2.write_bytes(b"#!/bin/sh\n# installer 10.37.1o\n")
    z = tmp_path / "IBCLinux-3.20.0.zip"
    z.write_bytes(ibc_zip_bytes("3.20.0"))
    z2 = tmp_path / "IBCLinux-3.24.2.zip"
    z2.write_bytes(ibc_zip_bytes("3.24.2"))
    return {"gw1": inst, "gw2": inst2, "ibc1": z, "ibc2": z2, "prefix": tmp_path / "opt"}


def do(
    argv: list[str],
    *,
    fetcher: FakeFetcher | None = None,
    runner: FakeRunner | None = None,
    hooks: object | None = None,
) -> str:
    out = io.StringIO()
    install_run(
        argv,
        fetcher=fetcher or FakeFetcher({}),
        runner=runner or FakeRunner(),
        hooks=hooks or NoHooks(),  # type: ignore[arg-type]
        out=out,
    )
    return out.getvalue()


def local(files: dict[str, Path], gw: str = "gw1", ibc: str = "ibc1") -> list[str]:
    return [
        "--from",
        str(files[gw]),
        "--ibc-from",
        str(files[ibc]),
        "--prefix",
        str(files["prefix"]),
    ]


def leftovers(prefix: Path) -> list[str]:
    """Dot-files the install must never leave behind (the lock file is expected)."""
    found = []
    for root, dirs, names in os.walk(prefix):
        for n in dirs + names:
            if n.startswith(".") and n not in (".install.lock", ".install4j"):
                found.append(str(Path(root, n).relative_to(prefix)))
    return sorted(found)


# --- plan ------------------------------------------------------------------------------------


def test_version_json_jsonp_and_plain_json_give_build_version() -> None:
    jsonp = 'twsstable_callback({"buildVersion":"10.30.1t","buildDateTime":"x"});\n'
    assert parse_gateway_version_json(jsonp) == "10.30.1t"
    assert parse_gateway_version_json('{"buildVersion": "10.37.1o"}') == "10.37.1o"


@pytest.mark.parametrize("text", ["", "oops", '{"other": 1}', '{"buildVersion": "../x"}'])
def test_version_json_without_usable_build_version_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_gateway_version_json(text)


def test_urls_follow_ib_and_ibc_release_locations() -> None:
    assert gateway_installer_url(Channel.LATEST) == (
        "https://download2.interactivebrokers.com/installers/ibgateway/latest-standalone/"
        "ibgateway-latest-standalone-linux-x64.sh"
    )
    assert gateway_version_url(Channel.STABLE).endswith("/stable-standalone/version.json")
    assert ibc_zip_url("3.20.0") == (
        "https://github.com/IbcAlpha/IBC/releases/download/3.20.0/IBCLinux-3.20.0.zip"
    )


def test_versions_are_read_from_conventional_file_names() -> None:
    name = "ibgateway-10.30.1t-standalone-linux-x64.sh"
    assert version_from_filename(Component.GATEWAY, name) == "10.30.1t"
    assert (
        version_from_filename(Component.GATEWAY, "ibgateway-stable-standalone-linux-x64.sh") is None
    )
    assert version_from_filename(Component.IBC, "IBCLinux-3.20.0.zip") == "3.20.0"
    assert version_from_filename(Component.IBC, "ibc.zip") is None


@pytest.mark.parametrize("bad", ["current", "../etc", "a/b", "", ".hidden", "x" * 65])
def test_bad_version_names_the_argument_and_what_is_accepted(bad: str) -> None:
    with pytest.raises(UsageError, match=r"--version: invalid value .*accepted"):
        check_version("--version", bad)


def test_sha256_argument_must_be_64_hex_digits_and_is_lowercased() -> None:
    assert check_sha256("--sha256", "A" * 64) == "a" * 64
    with pytest.raises(UsageError, match="--sha256: invalid value 'abc'; accepted: 64 hex"):
        check_sha256("--sha256", "abc")


@pytest.mark.parametrize("bad", ["relative/dir", "/", "/opt/../etc"])
def test_prefix_must_be_an_absolute_directory(bad: str) -> None:
    with pytest.raises(UsageError, match="--prefix"):
        check_prefix(bad)


def test_checksum_file_accepts_sha256sum_format() -> None:
    digest = "ab" * 32
    assert parse_checksum_file(f"{digest.upper()}  IBCLinux-3.20.0.zip\n") == digest
    with pytest.raises(ValueError):
        parse_checksum_file("<html>not found</html>")


def test_layout_settings_select_current_links() -> None:
    layout = Layout(check_prefix("/opt/ibgwd"))
    assert layout.settings() == {
        "TWS_PATH": "/opt/ibgwd",
        "IB_GATEWAY_VERSION": "current",
        "IBC_PATH": "/opt/ibgwd/ibc/current",
    }


# --- install from local files ----------------------------------------------------------------


def test_install_from_local_files_lays_out_versions_and_points_current(
    files: dict[str, Path],
) -> None:
    runner = FakeRunner()
    out = do(local(files), runner=runner)
    prefix = files["prefix"]
    gw = prefix / "ibgateway" / "10.30.1t"
    assert os.readlink(prefix / "ibgateway" / "current") == "10.30.1t"
    assert os.readlink(prefix / "ibc" / "current") == "3.20.0"
    assert (prefix / "ibgateway" / "current" / "jars").is_dir()  # what IBC checks
    # the installer's absolute paths now name the final directory, not the staging one
    assert (gw / ".install4j" / "inst_jre.cfg").read_text() == f"{gw}/jre\n"
    ibcstart = prefix / "ibc" / "current" / "scripts" / "ibcstart.sh"
    assert os.access(ibcstart, os.X_OK)
    assert oct(gw.stat().st_mode & 0o777) == "0o755"
    assert "TWS_PATH=" + str(prefix) in out and "IBC_PATH=" + str(prefix / "ibc/current") in out
    assert runner.calls[0][1].parent.parent.name.startswith(".staging-")
    assert leftovers(prefix) == []


def test_second_version_installs_side_by_side_and_keeps_the_first(files: dict[str, Path]) -> None:
    do(local(files))
    do(local(files, "gw2", "ibc2"))
    prefix = files["prefix"]
    assert sorted(p.name for p in (prefix / "ibgateway").iterdir()) == [
        "10.30.1t",
        "10.37.1o",
        "current",
    ]
    assert current_version(Layout(check_prefix(str(prefix))), Component.GATEWAY) == "10.37.1o"
    assert current_version(Layout(check_prefix(str(prefix))), Component.IBC) == "3.24.2"


def test_installed_version_is_reused_without_running_the_installer(files: dict[str, Path]) -> None:
    do(local(files))
    do(local(files, "gw2", "ibc2"))
    runner = FakeRunner()
    out = do(local(files), runner=runner)
    assert runner.calls == []
    assert "already in" in out
    assert os.readlink(files["prefix"] / "ibgateway" / "current") == "10.30.1t"


def test_version_argument_overrides_file_name(files: dict[str, Path]) -> None:
    do([*local(files), "--version", "10.30.1t-test", "--ibc-version", "3.20.0-test"])
    assert os.readlink(files["prefix"] / "ibgateway" / "current") == "10.30.1t-test"
    assert os.readlink(files["prefix"] / "ibc" / "current") == "3.20.0-test"


def test_ibc_version_comes_from_the_zip_when_the_name_has_none(
    files: dict[str, Path], tmp_path: Path
) -> None:
    plain = tmp_path / "ibc.zip"
    plain.write_bytes(ibc_zip_bytes("3.19.0"))
    do(["--from", str(files["gw1"]), "--ibc-from", str(plain), "--prefix", str(files["prefix"])])
    assert os.readlink(files["prefix"] / "ibc" / "current") == "3.19.0"


def test_from_without_version_in_name_requires_version(
    files: dict[str, Path], tmp_path: Path
) -> None:
    plain = tmp_path / "installer.sh"
    plain.write_bytes(b"x")
    with pytest.raises(
        UsageError, match=re.escape("--version is required with --from 'installer.sh'")
    ):
        do(
            [
                "--from",
                str(plain),
                "--ibc-from",
                str(files["ibc1"]),
                "--prefix",
                str(files["prefix"]),
            ]
        )


def test_matching_pinned_checksums_mark_the_install_verified(files: dict[str, Path]) -> None:
    gw, ibc = sha(files["gw1"].read_bytes()), sha(files["ibc1"].read_bytes())
    out = do([*local(files), "--sha256", gw.upper(), "--ibc-sha256", ibc])
    assert out.count("(verified)") == 2


# --- refusals leave nothing half-installed ---------------------------------------------------


def test_gateway_checksum_mismatch_is_refused_before_anything_runs(files: dict[str, Path]) -> None:
    do(local(files))
    runner = FakeRunner()
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        do([*local(files, "gw2", "ibc2"), "--sha256", wrong], runner=runner)
    message = str(err.value)
    assert "IB Gateway 10.37.1o: sha256 mismatch" in message
    assert wrong in message and sha(files["gw2"].read_bytes()) in message
    assert runner.calls == []
    prefix = files["prefix"]
    assert not (prefix / "ibgateway" / "10.37.1o").exists()
    assert not (prefix / "ibc" / "3.24.2").exists()
    assert os.readlink(prefix / "ibgateway" / "current") == "10.30.1t"
    assert os.readlink(prefix / "ibc" / "current") == "3.20.0"
    assert leftovers(prefix) == []


def test_ibc_checksum_mismatch_refuses_the_gateway_too(files: dict[str, Path]) -> None:
    runner = FakeRunner()
    with pytest.raises(ChecksumError, match=r"IBC 3.20.0: sha256 mismatch"):
        do([*local(files), "--ibc-sha256", "f" * 64], runner=runner)
    assert runner.calls == []
    assert sorted(os.listdir(files["prefix"] / "ibgateway")) == []


def test_failing_installer_installs_nothing(files: dict[str, Path]) -> None:
    with pytest.raises(InstallError, match="status 1"):
        do(local(files), runner=FakeRunner(fail=True))
    assert os.listdir(files["prefix"] / "ibgateway") == []
    assert os.listdir(files["prefix"] / "ibc") == []
    assert leftovers(files["prefix"]) == []


def test_corrupt_ibc_zip_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "IBCLinux-9.9.9.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InstallError, match="not a valid zip"):
        do(["--from", str(files["gw1"]), "--ibc-from", str(bad), "--prefix", str(files["prefix"])])
    assert not (files["prefix"] / "ibgateway" / "10.30.1t").exists()


def all_steps(files: dict[str, Path]) -> list[str]:
    rec = Recorder()
    do(local(files, "gw2", "ibc2"), hooks=rec)
    return rec.seen


def test_every_step_is_a_checkpoint(files: dict[str, Path]) -> None:
    assert all_steps(files) == [
        "fetched-ibgateway",
        "fetched-ibc",
        "verified",
        "built-ibgateway",
        "built-ibc",
        "committed-ibgateway",
        "committed-ibc",
        "switched-ibgateway",
        "switched-ibc",
    ]


STEPS = [
    "fetched-ibgateway",
    "fetched-ibc",
    "verified",
    "built-ibgateway",
    "built-ibc",
    "committed-ibgateway",
    "committed-ibc",
    "switched-ibgateway",
    "switched-ibc",
]


@pytest.mark.parametrize("step", STEPS)
def test_interrupted_install_leaves_previous_current_and_no_new_version(
    files: dict[str, Path], step: str
) -> None:
    do(local(files))
    with pytest.raises(KeyboardInterrupt):
        do(local(files, "gw2", "ibc2"), hooks=RaiseAt(step))
    prefix = files["prefix"]
    assert os.readlink(prefix / "ibgateway" / "current") == "10.30.1t"
    assert os.readlink(prefix / "ibc" / "current") == "3.20.0"
    assert sorted(os.listdir(prefix / "ibgateway")) == ["10.30.1t", "current"]
    assert sorted(os.listdir(prefix / "ibc")) == ["3.20.0", "current"]
    assert leftovers(prefix) == []


@pytest.mark.parametrize("step", ["committed-ibgateway", "switched-ibc"])
def test_interrupted_forced_reinstall_restores_the_old_tree(
    files: dict[str, Path], step: str
) -> None:
    do(local(files))
    gw = files["prefix"] / "ibgateway" / "10.30.1t"
    (gw / "admin-note").write_text("kept")
    with pytest.raises(KeyboardInterrupt):
        do([*local(files), "--force"], hooks=RaiseAt(step))
    assert (gw / "admin-note").read_text() == "kept"
    assert leftovers(files["prefix"]) == []


def test_forced_reinstall_replaces_the_tree(files: dict[str, Path]) -> None:
    do(local(files))
    gw = files["prefix"] / "ibgateway" / "10.30.1t"
    (gw / "admin-note").write_text("gone")
    runner = FakeRunner()
    do([*local(files), "--force"], runner=runner)
    assert len(runner.calls) == 1
    assert not (gw / "admin-note").exists() and (gw / "jars").is_dir()
    assert leftovers(files["prefix"]) == []


def test_next_run_cleans_what_a_killed_run_left(files: dict[str, Path]) -> None:
    do(local(files))
    prefix = files["prefix"]
    (prefix / ".staging-dead" / "ibgateway" / "jars").mkdir(parents=True)
    os.symlink("nowhere", prefix / "ibc" / ".current-deadbeef")
    # killed between moving 10.30.1t aside and renaming the new one in: restored, not lost
    os.rename(prefix / "ibgateway" / "10.30.1t", prefix / "ibgateway" / ".old-0123abcd-10.30.1t")
    do(local(files, "gw2", "ibc2"))
    assert (prefix / "ibgateway" / "10.30.1t" / "jars").is_dir()
    assert leftovers(prefix) == []


def test_current_that_is_a_real_directory_is_not_clobbered(files: dict[str, Path]) -> None:
    (files["prefix"] / "ibgateway" / "current").mkdir(parents=True)
    with pytest.raises(InstallError, match="is not a symlink"):
        do(local(files))
    assert not (files["prefix"] / "ibgateway" / "10.30.1t").exists()


# --- downloads (fake fetcher: these machines cannot reach IB or GitHub) ----------------------

VERSION_URL = gateway_version_url(Channel.STABLE)
DOWNLOAD = ["--arch", "x64"]  # the same on every CI machine
LATEST_API = "https://api.github.com/repos/IbcAlpha/IBC/releases/latest"


def pages(ibc_checksum: str | None = None) -> dict[str, bytes]:
    zip_bytes = ibc_zip_bytes("3.24.2")
    p = {
        VERSION_URL: b'twsstable_callback({"buildVersion":"10.37.1o"});',
        gateway_installer_url(Channel.STABLE): b"#!/bin/sh\n# downloaded\n",
        LATEST_API: b'{"tag_name": "3.24.2"}',
        ibc_zip_url("3.24.2"): zip_bytes,
    }
    if ibc_checksum is not None:
        p[ibc_zip_url("3.24.2") + ".sha256"] = f"{ibc_checksum}  IBCLinux-3.24.2.zip\n".encode()
    return p


def test_download_uses_channel_version_and_latest_ibc_with_published_checksum(
    tmp_path: Path,
) -> None:
    p = pages()
    p = pages(sha(p[ibc_zip_url("3.24.2")]))
    fetcher = FakeFetcher(p)
    out = do([*DOWNLOAD, "--allow-unverified", "--prefix", str(tmp_path / "opt")], fetcher=fetcher)
    assert os.readlink(tmp_path / "opt" / "ibgateway" / "current") == "10.37.1o"
    assert os.readlink(tmp_path / "opt" / "ibc" / "current") == "3.24.2"
    assert "IBC 3.24.2: " in out and "(verified)" in out
    assert "IB Gateway 10.37.1o: " in out and "(not verified)" in out  # IB publishes none
    assert all(url.startswith("https://") for url in fetcher.asked)


def test_unpinned_gateway_download_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    fetcher = FakeFetcher(pages())
    with pytest.raises(UnverifiedError, match=r"IB publishes no checksum.*--allow-unverified"):
        do([*DOWNLOAD, "--prefix", str(tmp_path / "opt")], fetcher=fetcher)
    assert fetcher.asked == []
    assert not (tmp_path / "opt").exists()


def test_pinned_gateway_download_is_verified(tmp_path: Path) -> None:
    p = pages()
    p = pages(sha(p[ibc_zip_url("3.24.2")]))
    pin = sha(p[gateway_installer_url(Channel.STABLE)])
    out = do(
        [*DOWNLOAD, "--sha256", pin, "--prefix", str(tmp_path / "opt")], fetcher=FakeFetcher(p)
    )
    assert "IB Gateway 10.37.1o: " in out and "(not verified)" not in out


def test_ibc_download_without_a_published_checksum_is_refused(tmp_path: Path) -> None:
    p = pages()  # no .sha256 next to the IBC release
    pin = sha(p[gateway_installer_url(Channel.STABLE)])
    with pytest.raises(UnverifiedError, match=r"IBC: refusing .*\.sha256 was not found"):
        do([*DOWNLOAD, "--sha256", pin, "--prefix", str(tmp_path / "opt")], fetcher=FakeFetcher(p))
    assert os.listdir(tmp_path / "opt" / "ibgateway") == []


def test_installer_for_arm_is_chosen_on_aarch64() -> None:
    assert arch_for_machine("aarch64") is Arch.ARM and arch_for_machine("x86_64") is Arch.X64
    assert gateway_installer_url(Channel.STABLE, Arch.ARM).endswith(
        "/stable-standalone/ibgateway-stable-standalone-linux-arm.sh"
    )
    with pytest.raises(UsageError, match=r"'riscv64'.*x86_64 .*aarch64"):
        arch_for_machine("riscv64")


def test_download_on_aarch64_fetches_ibs_arm_installer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    p = pages()
    p[gateway_installer_url(Channel.STABLE, Arch.ARM)] = b"#!/bin/sh\n# arm\n"
    p = {**p, ibc_zip_url("3.24.2") + ".sha256": sha(p[ibc_zip_url("3.24.2")]).encode()}
    fetcher = FakeFetcher(p)
    do(["--allow-unverified", "--prefix", str(tmp_path / "opt")], fetcher=fetcher)
    assert gateway_installer_url(Channel.STABLE, Arch.ARM) in fetcher.asked
    assert gateway_installer_url(Channel.STABLE, Arch.X64) not in fetcher.asked


def test_download_with_wrong_published_ibc_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match=r"IBC 3.24.2: sha256 mismatch"):
        do(
            [*DOWNLOAD, "--allow-unverified", "--prefix", str(tmp_path / "opt")],
            fetcher=FakeFetcher(pages("1" * 64)),
        )
    assert os.listdir(tmp_path / "opt" / "ibgateway") == []


def test_download_of_a_version_the_channel_does_not_serve_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--version: '10.19.1a' .*stable is at 10.37.1o"):
        do(
            [*DOWNLOAD, "--allow-unverified", "--version", "10.19.1a", "--prefix", str(tmp_path)],
            fetcher=FakeFetcher(pages()),
        )


def test_unreachable_version_json_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"version.json"):
        do([*DOWNLOAD, "--allow-unverified", "--prefix", str(tmp_path)], fetcher=FakeFetcher({}))


# --- the command -----------------------------------------------------------------------------


def test_unknown_channel_exits_64_naming_the_accepted_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--channel", "nightly"]) == 64
    err = capsys.readouterr().err
    assert "--channel" in err and "'nightly'" in err and "stable" in err and "latest" in err


def test_missing_local_file_exits_64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--from", str(tmp_path / "nope.sh"), "--prefix", str(tmp_path)]) == 64
    assert "--from" in capsys.readouterr().err


# --- the installer's own version (install4j's i4jparams.conf) --------------------------------


def test_version_is_read_from_the_installer_the_readme_names(tmp_path: Path) -> None:
    """IB's download is named ibgateway-stable-standalone-linux-x64.sh: no version in the name."""
    from ib_installer import build_installer

    inst = build_installer(
        tmp_path / "ibgateway-stable-standalone-linux-x64.sh", "10.37.1o", simulated=False
    )
    assert read_version(inst) == "10.37.1o"
    z = tmp_path / "IBCLinux-3.24.1.zip"
    z.write_bytes(ibc_zip_bytes("3.24.1"))
    prefix = tmp_path / "opt"
    do(["--from", str(inst), "--ibc-from", str(z), "--prefix", str(prefix)])
    assert os.readlink(prefix / "ibgateway" / "current") == "10.37.1o"


def test_buildinfo_wins_and_sys_version_is_the_fallback() -> None:
    text = '<variable name="buildInfo" value="Build 10.30.1t, Nov 4, 2024 3:10:55 PM" />'
    assert version_from_params(text) == "10.30.1t"
    assert version_from_params('<variable name="sys.version" value="10.19.2a"/>') == "10.19.2a"
    with pytest.raises(NotAnInstallerError):
        version_from_params("<config/>")


def test_a_script_that_is_not_an_installer_says_what_to_pass(tmp_path: Path) -> None:
    inst = tmp_path / "ibgateway-stable-standalone-linux-x64.sh"
    inst.write_bytes(b"#!/bin/sh\necho hello\n")
    with pytest.raises(NotAnInstallerError, match="tail -c N"):
        read_version(inst)
    z = tmp_path / "IBCLinux-3.20.0.zip"
    z.write_bytes(ibc_zip_bytes("3.20.0"))
    with pytest.raises(UsageError, match=r"--version is required .* e\.g\. --version 10\.37\.1o"):
        do(["--from", str(inst), "--ibc-from", str(z), "--prefix", str(tmp_path / "opt")])
    assert sfx_length(
        b'#!/bin/sh\ntail -c 2933291 "$prg_dir/${progname}" > sfx_archive.tar.gz\n'
    ) == (2933291)


# --- what root does with what the installer wrote --------------------------------------------


class PlantingRunner(FakeRunner):
    """A hostile installer: leaves the given extra entries in its tree."""

    def __init__(self, plant: str) -> None:
        super().__init__()
        self.plant = plant

    def run(self, installer: Path, target: Path) -> None:
        super().run(installer, target)
        if self.plant == "link-out":
            (target / "jars" / "evil.jar").symlink_to("/etc/shadow")
        elif self.plant == "link-up":
            (target / "jars" / "evil").symlink_to("../../../../etc")
        elif self.plant == "hardlink":
            os.link(target / "ibgateway.vmoptions", target / "copy.vmoptions")
        elif self.plant == "fifo":
            os.mkfifo(target / "pipe")


@pytest.mark.parametrize("plant", ["link-out", "link-up", "hardlink", "fifo"])
def test_links_out_hard_links_and_special_files_from_the_installer_are_refused(
    files: dict[str, Path], plant: str
) -> None:
    with pytest.raises(InstallError, match="nothing was installed"):
        do(local(files), runner=PlantingRunner(plant))
    assert os.listdir(files["prefix"] / "ibgateway") == []


def test_harden_tree_makes_everything_roots_and_masks_modes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    os.chmod(tree / "sub", 0o3777)
    (tree / "sub" / "suid").write_text("x")
    os.chmod(tree / "sub" / "suid", 0o6777)
    (tree / "sub" / "inside").symlink_to("suid")
    os.chown(tree / "sub" / "suid", 65534, 65534)
    os.lchown(tree / "sub" / "inside", 65534, 65534)
    assert harden_tree(tree) == 3
    assert oct(os.stat(tree / "sub").st_mode & 0o7777) == "0o755"
    st = os.stat(tree / "sub" / "suid")
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o755", 0, 0)
    assert os.lstat(tree / "sub" / "inside").st_uid == 0


def test_ibc_zip_modes_are_masked(tmp_path: Path) -> None:
    z = tmp_path / "IBCLinux-3.20.0.zip"
    with zipfile.ZipFile(z, "w") as archive:
        for name, mode in [("scripts/ibcstart.sh", 0o4777), ("IBC.jar", 0o2666), ("x", 0o1000)]:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, "x")
    extract_ibc(z, tmp_path / "out")
    modes = {p.name: oct(p.stat().st_mode & 0o7777) for p in (tmp_path / "out").rglob("*")}
    assert modes == {"scripts": "0o755", "ibcstart.sh": "0o755", "IBC.jar": "0o644", "x": "0o644"}


def test_prefix_that_another_user_can_write_is_refused(files: dict[str, Path]) -> None:
    parent = files["prefix"].parent / "theirs"
    parent.mkdir()
    os.chown(parent, 65534, 65534)
    with pytest.raises(InstallError, match=r"can be changed by a user other than root"):
        do([*local(files)[:4], "--prefix", str(parent / "opt")])
    assert not (parent / "opt").exists()
    world = files["prefix"].parent / "world"
    world.mkdir(mode=0o777)
    os.chmod(world, 0o777)
    with pytest.raises(InstallError, match=r"mode 777"):
        check_prefix_safe(world / "opt")


def test_prefix_below_a_sticky_directory_via_a_root_owned_entry_is_accepted(
    tmp_path: Path,
) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (sticky / "mine").mkdir()
    check_prefix_safe(sticky / "mine" / "opt")  # no error: others cannot replace "mine"


def test_lock_file_planted_as_a_symlink_is_not_followed(files: dict[str, Path]) -> None:
    victim = files["prefix"].parent / "victim"
    victim.write_text("keep")
    files["prefix"].mkdir()
    (files["prefix"] / ".install.lock").symlink_to(victim)
    with pytest.raises(InstallError):
        do(local(files))
    assert victim.read_text() == "keep"


# --- list and rollback -----------------------------------------------------------------------


def test_list_and_use_roll_back_to_an_installed_version(files: dict[str, Path]) -> None:
    do(local(files))
    do(local(files, "gw2", "ibc2"))
    prefix = ["--prefix", str(files["prefix"])]
    listed = do(["--list", *prefix])
    assert "  10.30.1t\n* 10.37.1o  (current)\n" in listed
    assert "  3.20.0\n* 3.24.2  (current)\n" in listed
    out = do(["--use", "10.30.1t", "--ibc-use", "3.20.0", *prefix])
    assert "IB Gateway: current -> 10.30.1t (was 10.37.1o)" in out
    assert "systemctl restart ibgwd 'ibgwd@*'" in out and "2FA" in out
    assert os.readlink(files["prefix"] / "ibgateway" / "current") == "10.30.1t"
    assert os.readlink(files["prefix"] / "ibc" / "current") == "3.20.0"
    with pytest.raises(InstallError, match=r"10\.1\.1 is not installed .*installed: 10\.30\.1t, "):
        do(["--use", "10.1.1", *prefix])
    with pytest.raises(InstallError, match=r"IBC 9\.9 is not installed"):
        do(["--use", "10.37.1o", "--ibc-use", "9.9", *prefix])
    assert os.readlink(files["prefix"] / "ibgateway" / "current") == "10.30.1t"  # unchanged
    with pytest.raises(UsageError, match="do not install"):
        do(["--use", "10.30.1t", "--from", str(files["gw1"]), *prefix])


def test_progress_line_shows_size_rate_and_time_left() -> None:
    line = format_progress(50 << 20, 200 << 20, 10.0)
    assert line == "50.0 MiB of 200.0 MiB (25 %), 5.0 MiB/s, 30 s left"
    assert format_progress(3 << 20, None, 1.0) == "3.0 MiB, 3.0 MiB/s"


def test_progress_is_drawn_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = TtyProgress("downloading x.sh", stream)
        p(1 << 20, 2 << 20)
        p(2 << 20, 2 << 20)
        p.finish()
    assert pipe.getvalue() == ""
    lines = tty.getvalue()
    assert lines.startswith("\r\x1b[Kdownloading x.sh: 1.0 MiB of 2.0 MiB (50 %)")
    assert "2.0 MiB of 2.0 MiB (100 %)" in lines and lines.endswith("\n")


def test_installing_needs_root_listing_does_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["--from", "x.sh", "--prefix", str(tmp_path)]) == 77
    assert "must run as root" in capsys.readouterr().err
    assert main(["--list", "--prefix", str(tmp_path)]) == 0
    assert "(none installed)" in capsys.readouterr().out


def test_downloaded_installer_of_another_version_than_announced_is_refused(
    tmp_path: Path,
) -> None:
    from ib_installer import build_installer

    inst = build_installer(tmp_path / "x.sh", "10.38.1a", simulated=False)  # version.json: 10.37.1o
    p = pages()
    p[gateway_installer_url(Channel.STABLE)] = inst.read_bytes()
    p[ibc_zip_url("3.24.2") + ".sha256"] = sha(p[ibc_zip_url("3.24.2")]).encode()
    with pytest.raises(
        InstallError, match=r"is IB Gateway 10\.38\.1a, not 10\.37\.1o as announced"
    ):
        do(
            [*DOWNLOAD, "--allow-unverified", "--prefix", str(tmp_path / "opt")],
            fetcher=FakeFetcher(p),
        )
    assert os.listdir(tmp_path / "opt" / "ibgateway") == []


def test_a_component_directory_another_user_can_write_is_refused(files: dict[str, Path]) -> None:
    """A migrated layout where ibgateway/ belongs to the Gateway's user: it could plant an
    .old-* directory that the clean-up of an interrupted run would rename into a version."""
    do(local(files))
    root = files["prefix"] / "ibgateway"
    os.chown(root, 65534, 65534)
    planted = root / ".old-0123abcd-10.37.1o"
    planted.mkdir()
    with pytest.raises(InstallError, match=r"ibgateway must be a directory that only root can"):
        do(local(files, "gw2", "ibc2"))
    assert not (root / "10.37.1o").exists() and planted.exists()
    with pytest.raises(InstallError, match="only root can write"):
        do(["--use", "10.30.1t", "--prefix", str(files["prefix"])])
