"""Writing rendered files atomically and privately; the only code that touches their bytes.

Each file goes to a temporary file in the target directory (created 0600 with O_EXCL, so it
is never readable by others, not even for a moment), is fsync'ed, chown'ed, chmod'ed and
then renamed over the target. A crash leaves either the old file or the new one, never a
partial file. The system calls go through `FileOps` so tests can make any of them fail.

The target directory may belong to the gateway user (its settings directory): it is opened
without following a link planted there (ibgwd/isolation/fs.py), and every call then names the
file through that open directory (/proc/self/fd/N/NAME), so a directory swapped for a link
after the check cannot redirect root's write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from ibgwd.isolation import fs as safe_fs
from ibgwd.render.render import REDACTED, RenderedFile

log = logging.getLogger(__name__)

DIR_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class FileOps(Protocol):
    """The system calls write_files needs (os.* semantics, OSError on failure)."""

    def open(self, path: str, flags: int, mode: int) -> int: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def fsync(self, fd: int) -> None: ...
    def fchown(self, fd: int, uid: int, gid: int) -> None: ...
    def fchmod(self, fd: int, mode: int) -> None: ...
    def close(self, fd: int) -> None: ...
    def replace(self, src: str, dst: str) -> None: ...
    def link(self, src: str, dst: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def mkdir(self, path: str, mode: int) -> None: ...
    def chown(self, path: str, uid: int, gid: int) -> None: ...
    def lexists(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...


class OsFileOps:
    """FileOps backed by the os module."""

    def open(self, path: str, flags: int, mode: int) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fchown(self, fd: int, uid: int, gid: int) -> None:
        os.fchown(fd, uid, gid)

    def fchmod(self, fd: int, mode: int) -> None:
        os.fchmod(fd, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def link(self, src: str, dst: str) -> None:
        os.link(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(path, uid, gid)

    def lexists(self, path: str) -> bool:
        return os.path.lexists(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)


def redacted_text(file: RenderedFile) -> str:
    """The file's text with secrets masked, for dry runs and logs."""
    if file.redacted:
        return file.redacted
    return REDACTED + "\n" if file.secret else file.text


def write_files(
    files: Iterable[RenderedFile],
    *,
    uid: int | None = None,
    gid: int | None = None,
    ops: FileOps | None = None,
) -> list[Path]:
    """Write each file atomically; skip `only_if_missing` files that exist. Missing parent
    directories are created 0700 (and chown'ed like the files). Returns the paths written.
    Raises OSError; the file being written is then left as it was."""
    fs = ops if ops is not None else OsFileOps()
    written: list[Path] = []
    for file in files:
        if file.only_if_missing and fs.lexists(str(file.path)):
            log.debug("file kept path=%s reason=exists", file.path)
            continue
        _make_parents(fs, file.path.parent, uid, gid)
        with safe_fs.opened_dir(file.path.parent) as dfd:
            at = dataclasses.replace(file, path=Path(f"/proc/self/fd/{dfd}") / file.path.name)
            _remove_stale_temps(fs, at.path)
            if _write_one(fs, at, uid, gid):
                written.append(file.path)
                log.info("file written path=%s mode=%o", file.path, file.mode)
    return written


def _make_parents(fs: FileOps, directory: Path, uid: int | None, gid: int | None) -> None:
    missing: list[Path] = []
    while not fs.lexists(str(directory)):
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        # Through the parent opened link-safely: no mkdir/chown lands behind a planted link.
        with safe_fs.opened_dir(path.parent) as parent:
            fs.mkdir(f"/proc/self/fd/{parent}/{path.name}", DIR_MODE)
            if uid is not None or gid is not None:
                made = os.open(path.name, _DIR_FLAGS, dir_fd=parent)  # the dir we made, no link
                try:
                    fs.fchown(made, -1 if uid is None else uid, -1 if gid is None else gid)
                finally:
                    os.close(made)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_temps(fs: FileOps, path: Path) -> None:
    """Remove temporary files left by a writer that was killed mid-write."""
    prefix = _temp_prefix(path)
    for name in fs.listdir(str(path.parent)):
        if name.startswith(prefix) and name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                fs.unlink(str(path.parent / name))
                log.info("stale temporary file removed path=%s", path.parent / name)


def _write_one(fs: FileOps, file: RenderedFile, uid: int | None, gid: int | None) -> bool:
    temp = str(file.path.parent / f"{_temp_prefix(file.path)}{secrets.token_hex(6)}.tmp")
    fd = fs.open(temp, _TEMP_FLAGS, 0o600)
    placed = False
    try:
        try:
            # surrogateescape: binary content (the Xauthority cookie) passes through unchanged
            data = file.text.encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[fs.write(fd, view.tobytes()) :]
            fs.fsync(fd)
            if uid is not None or gid is not None:
                fs.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            fs.fchmod(fd, file.mode)
        finally:
            fs.close(fd)
        if file.only_if_missing:
            try:
                fs.link(temp, str(file.path))  # never replaces a file created meanwhile
            except FileExistsError:
                return False
            placed = True
        else:
            fs.replace(temp, str(file.path))
            placed = True
        _fsync_dir(fs, file.path.parent)
        return True
    finally:
        if not placed or file.only_if_missing:
            with contextlib.suppress(OSError):  # keep the original error
                fs.unlink(temp)


def _fsync_dir(fs: FileOps, directory: Path) -> None:
    """Make the rename durable."""
    fd = fs.open(str(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0)
    try:
        fs.fsync(fd)
    finally:
        fs.close(fd)
