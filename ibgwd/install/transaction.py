"""Installing under the prefix all-or-nothing: lock, stage, verify, build, rename, switch links.

Everything is built in ``<prefix>/.staging-*`` (same filesystem as the targets), then each
version directory is renamed into place and each ``current`` symlink is replaced atomically
(symlink to a temporary name + rename). A failure or an exception rolls back what was already
committed; a SIGKILL leaves at most an inert staging directory, removed by the next run, and
never a half-built ``<ver>/`` or a ``current`` pointing at one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ibgwd.errors import InstallError
from ibgwd.install.fetch import Fetcher, NotFoundError
from ibgwd.install.plan import (
    Component,
    Layout,
    Source,
    checksum_problem,
    parse_checksum_file,
)

log = logging.getLogger(__name__)

GATEWAY_MARKER = "jars"  # IBC requires <TWS_PATH>/ibgateway/<ver>/jars
IBC_MARKER = "scripts/ibcstart.sh"  # what ibgwd runs
RELOCATE_MAX_BYTES = 4 << 20
OLD_PREFIX = ".old-"
OLD_RANDOM_LEN = 8


class ChecksumError(InstallError):
    """A file's sha256 differs from the pinned or published one."""


class Hooks(Protocol):
    """Seam called between steps; tests raise from it to simulate an interrupted install."""

    def checkpoint(self, step: str) -> None: ...


class NoHooks:
    def checkpoint(self, step: str) -> None:
        return None


class InstallerRunner(Protocol):
    def run(self, installer: Path, target: Path) -> None: ...


class ShellInstallerRunner:
    """Runs IB's install4j installer unattended: ``sh INSTALLER -q -dir TARGET``."""

    def __init__(self, timeout_s: float = 1800.0) -> None:
        self._timeout_s = timeout_s

    def run(self, installer: Path, target: Path) -> None:
        argv = ["/bin/sh", str(installer), "-q", "-dir", str(target)]
        log.info("run installer=%s target=%s", installer, target)
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self._timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise InstallError(
                f"IB Gateway installer did not finish within {self._timeout_s:.0f} s"
            ) from e
        if proc.returncode != 0:
            tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise InstallError(
                f"IB Gateway installer exited with status {proc.returncode}: " + " | ".join(tail)
            )


@dataclass(frozen=True)
class Installed:
    component: Component
    version: str
    path: Path
    sha256: str | None  # None when an existing install was reused
    verified: bool  # the digest matched a pinned or published checksum
    reused: bool


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise InstallError(f"another install-gateway is running (lock {lock_file})") from e
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(layout: Layout, components: list[Component]) -> None:
    """Clean what a killed run left (only called under the lock, so nothing is in use)."""
    prefix = Path(layout.prefix)
    for entry in prefix.iterdir():
        if entry.name.startswith(layout.staging_prefix) and entry.is_dir():
            log.warning("removing stale staging dir=%s", entry)
            shutil.rmtree(entry, ignore_errors=True)
    for component in components:
        root = Path(layout.root(component))
        for entry in root.iterdir():
            if entry.name.startswith(".current-") and entry.is_symlink():
                entry.unlink()
            elif entry.name.startswith(OLD_PREFIX) and entry.is_dir():
                version = entry.name[len(OLD_PREFIX) + OLD_RANDOM_LEN + 1 :]
                final = root / version
                if version and not final.exists():
                    log.warning("restoring interrupted replacement dir=%s", final)
                    entry.rename(final)
                else:
                    shutil.rmtree(entry, ignore_errors=True)


def _with_published_checksum(source: Source, fetcher: Fetcher) -> Source:
    if source.expected_sha256 is not None or source.checksum_url is None:
        return source
    try:
        text = fetcher.read_text(source.checksum_url)
    except NotFoundError:
        return source
    try:
        return replace(source, expected_sha256=parse_checksum_file(text))
    except ValueError as e:
        raise ChecksumError(f"{source.checksum_url}: {e}") from e


def _acquire(source: Source, dest: Path, fetcher: Fetcher) -> None:
    if source.local_path is not None:
        try:
            shutil.copyfile(source.local_path, dest)
        except OSError as e:
            raise InstallError(f"cannot read {source.local_path}: {e.strerror}") from e
    else:
        assert source.url is not None
        with dest.open("xb") as f:
            fetcher.download(source.url, f)


def relocate(tree: Path, old: str, new: str) -> list[Path]:
    """Rewrite absolute paths the installer baked in (e.g. ``.install4j/inst_jre.cfg``)."""
    changed: list[Path] = []
    old_b, new_b = old.encode(), new.encode()
    candidates = [*tree.iterdir(), *((tree / ".install4j").glob("*"))]
    for path in candidates:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > RELOCATE_MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data or old_b not in data:
            continue
        path.write_bytes(data.replace(old_b, new_b))
        changed.append(path)
    return changed


def extract_ibc(zip_path: Path, target: Path) -> None:
    """Unpack IBC's release zip, keeping modes and making the scripts executable."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            target.mkdir(mode=0o755)
            for info in archive.infolist():
                parts = Path(info.filename).parts
                if info.filename.startswith("/") or ".." in parts:
                    raise InstallError(f"{zip_path}: unsafe member name {info.filename!r}")
                extracted = Path(archive.extract(info, target))
                mode = (info.external_attr >> 16) & 0o777
                if not info.is_dir() and mode:
                    extracted.chmod(mode | 0o444)
                if extracted.suffix == ".sh":
                    extracted.chmod(extracted.stat().st_mode | 0o755)
    except zipfile.BadZipFile as e:
        raise InstallError(f"{zip_path}: not a valid zip file ({e})") from e


class _Transaction:
    """Committed renames and link switches, undone in reverse order on failure."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._cleanup: list[Path] = []

    def commit_dir(self, staged: Path, final: Path) -> None:
        if final.exists():
            aside = final.with_name(f"{OLD_PREFIX}{secrets.token_hex(4)}-{final.name}")
            final.rename(aside)
            self._undo.append(lambda: os.rename(aside, final))
            self._cleanup.append(aside)
        staged.rename(final)
        _fsync_dir(final.parent)
        self._undo.append(lambda: shutil.rmtree(final, ignore_errors=True))

    def switch_link(self, link: Path, target: str) -> None:
        if link.exists() and not link.is_symlink():
            raise InstallError(f"{link} exists and is not a symlink; move it away first")
        old = os.readlink(link) if link.is_symlink() else None
        _replace_link(link, target)
        if old is None:
            self._undo.append(lambda: link.unlink(missing_ok=True))
        else:
            self._undo.append(lambda: _replace_link(link, old))

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            try:
                undo()
            except OSError as e:  # keep undoing the rest
                log.error("rollback step failed error=%s", e)
        self._undo.clear()
        self._cleanup.clear()

    def finish(self) -> None:
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _replace_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".current-{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def run_install(
    layout: Layout,
    sources: list[Source],
    *,
    fetcher: Fetcher,
    runner: InstallerRunner,
    hooks: Hooks,
    force: bool = False,
    report: Callable[[str], None] = lambda _line: None,
) -> list[Installed]:
    """Install every source side by side by version and point ``current`` at it, or nothing."""
    prefix = Path(layout.prefix)
    prefix.mkdir(mode=0o755, parents=True, exist_ok=True)
    components = [s.component for s in sources]
    for component in components:
        Path(layout.root(component)).mkdir(mode=0o755, exist_ok=True)
    results: list[Installed] = []
    with _locked(Path(layout.lock_file)):
        _remove_stale(layout, components)
        staging = Path(tempfile.mkdtemp(prefix=layout.staging_prefix, dir=prefix))
        tx = _Transaction()
        try:
            todo: list[tuple[Source, Path, str, bool]] = []
            for source in sources:
                final = Path(layout.version_dir(source.component, source.version))
                if final.exists() and not force:
                    report(f"{source.component.title} {source.version}: already in {final}")
                    results.append(
                        Installed(source.component, source.version, final, None, False, True)
                    )
                    continue
                pinned = _with_published_checksum(source, fetcher)
                download = staging / f"{source.component.value}.download"
                report(f"{source.component.title} {source.version}: fetching {source.origin}")
                _acquire(pinned, download, fetcher)
                hooks.checkpoint(f"fetched-{source.component.value}")
                digest = sha256_file(download)
                problem = checksum_problem(pinned, digest)
                if problem:
                    raise ChecksumError(problem)
                verified = pinned.expected_sha256 is not None
                if not verified:
                    report(
                        f"{source.component.title} {source.version}: sha256 {digest} "
                        "(no pinned or published checksum to compare; pin it with --sha256)"
                    )
                todo.append((pinned, download, digest, verified))
            hooks.checkpoint("verified")
            built: list[tuple[Source, Path]] = []
            for source, download, _digest, _verified in todo:
                tree = staging / source.component.value
                final = Path(layout.version_dir(source.component, source.version))
                if source.component is Component.GATEWAY:
                    runner.run(download, tree)
                    if not (tree / GATEWAY_MARKER).is_dir():
                        raise InstallError(
                            f"IB Gateway installer finished but {GATEWAY_MARKER}/ is missing"
                        )
                    relocate(tree, str(tree), str(final))
                else:
                    extract_ibc(download, tree)
                    if not (tree / IBC_MARKER).is_file():
                        raise InstallError(f"IBC zip has no {IBC_MARKER}")
                tree.chmod(0o755)
                hooks.checkpoint(f"built-{source.component.value}")
                built.append((source, tree))
            for source, tree in built:
                tx.commit_dir(tree, Path(layout.version_dir(source.component, source.version)))
                hooks.checkpoint(f"committed-{source.component.value}")
            for source in sources:
                tx.switch_link(Path(layout.current(source.component)), source.version)
                hooks.checkpoint(f"switched-{source.component.value}")
        except BaseException:
            tx.rollback()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        tx.finish()
    for source, _download, digest, verified in todo:
        final = Path(layout.version_dir(source.component, source.version))
        results.append(Installed(source.component, source.version, final, digest, verified, False))
    return results


def current_version(layout: Layout, component: Component) -> str | None:
    """The version ``current`` points at, or None when nothing is installed."""
    link = Path(layout.current(component))
    return os.readlink(link) if link.is_symlink() else None
