"""Root's file operations in directories a gateway user may write, without following links.

ibgwd runs as root and creates, chowns and writes below paths such as the Gateway's settings
directory, which belongs to the gateway user. A symbolic link planted there must not send
root's write or chown elsewhere. Every path is opened one component at a time from `/`
(openat): a symbolic link is followed only when the directory holding it is root's and
writable by nobody else (ssh's StrictModes rule); anywhere else it is refused (ELOOP). All
further work goes through the opened directory's descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
MAX_LINKS = 40  # like the kernel's limit on nested symbolic links


class UnsafePathError(OSError):
    """A path leads through a symbolic link that a non-root user could have planted."""


def trusted(st: os.stat_result) -> bool:
    """A directory only root can change: root's, and not writable by group or others."""
    return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def open_dir(path: Path | str, *, create_mode: int | None = None) -> int:
    """An O_DIRECTORY descriptor of the absolute `path`; missing components are created with
    `create_mode` (owned by root) when it is given. Raises UnsafePathError for a link in a
    directory others can write, OSError for anything else."""
    path = os.path.normpath(str(path))
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path}")
    todo = [p for p in path.split("/") if p]
    current = "/"
    links = 0
    fd = os.open("/", _DIR_FLAGS)
    try:
        while todo:
            name = todo.pop(0)
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, create_mode, dir_fd=fd)
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                where = os.path.join(current, name)
                if not trusted(os.fstat(fd)):
                    raise UnsafePathError(
                        errno.ELOOP,
                        f"refusing to follow the symbolic link {where}: its directory "
                        "is writable by a user other than root",
                    ) from None
                links += 1
                if links > MAX_LINKS:
                    raise
                target = os.readlink(name, dir_fd=fd)
                resolved = os.path.normpath(os.path.join(current, target))
                todo = [p for p in resolved.split("/") if p] + todo
                os.close(fd)
                fd = os.open("/", _DIR_FLAGS)
                current = "/"
                continue
            os.close(fd)
            fd = nfd
            current = os.path.join(current, name)
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def opened_dir(path: Path | str, *, create_mode: int | None = None) -> Iterator[int]:
    fd = open_dir(path, create_mode=create_mode)
    try:
        yield fd
    finally:
        os.close(fd)


def ensure_dir(path: Path, uid: int, gid: int, mode: int = 0o700) -> None:
    """Create `path` (missing parents 0755 root) and give it to uid:gid with `mode`, through
    the directory's descriptor (fchown/fchmod: never a link's target)."""
    with opened_dir(path, create_mode=0o755) as fd:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)


def repair_ownership(path: Path, uid: int, gid: int) -> int:
    """Give every directory and regular file below `path` (a tree that belongs to the gateway
    user: its settings, its home) back to uid:gid, without following links. Undoes an
    ownership fix-up such as systemd's StateDirectory= chown to root after an admin ran
    `chown -R` on the state directory. Files with several hard links are left alone (a link to
    a file elsewhere must not change owner). Returns how many entries changed."""
    changed = 0
    with opened_dir(path) as top:
        for _root, dirs, files, dfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for name in (*dirs, *files):
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if (st.st_uid, st.st_gid) == (uid, gid):
                    continue
                if stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):
                    os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
                    changed += 1
    if changed:
        log.info("event=ownership_repaired path=%s entries=%d uid=%d", path, changed, uid)
    return changed


def rewrite(path: Path, pattern: re.Pattern[str], replacement: str) -> bool:
    """Replace `pattern` in the regular file `path` atomically (temporary file, rename), in its
    directory opened safely; keeps the file's owner and mode (minus group/other write).
    Returns False when the file is missing, not a regular file, or already right."""
    try:
        dfd = open_dir(path.parent)
    except FileNotFoundError:
        return False
    try:
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno == errno.ELOOP:
                return False
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return False
            text = f.read().decode("utf-8")
        new = pattern.sub(replacement, text)
        if new == text:
            return False
        temp = f".{path.name}.{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        tfd = os.open(temp, flags, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(tfd, "wb") as out:
                out.write(new.encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
                os.fchown(out.fileno(), st.st_uid, st.st_gid)
                os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode) & 0o755)
            os.rename(temp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dfd)
            raise
        os.fsync(dfd)
        return True
    finally:
        os.close(dfd)
