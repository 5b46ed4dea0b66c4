"""Installing under the prefix all-or-nothing: lock, stage, verify, build, rename, switch links.

IB's installer runs unprivileged into the staging directory (runner.py) and what it wrote is
made root's before root touches it; the prefix must be writable by root only, so no other user
can plant a link that root's renames, link switches or lock would follow.

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
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ibgwd.errors import InstallError
from ibgwd.install.fetch import Fetcher, NotFoundError, TtyProgress
from ibgwd.install.installer import NotAnInstallerError, read_version
from ibgwd.install.plan import (
    CURRENT,
    Component,
    Layout,
    Source,
    UnverifiedError,
    checksum_problem,
    parse_checksum_file,
)
from ibgwd.install.runner import INSTALL_USER, MODE_MASK, harden_tree

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
    """Runs IB's installer into ``target``.

    ``target``'s parent is a fresh directory that only root can reach by name; the runner may
    hand it to an unprivileged user. When ``run`` returns, nothing it started may still run:
    the caller then takes the directory back and makes the tree root's (runner.harden_tree).
    """

    def run(self, installer: Path, target: Path) -> None: ...


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
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
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
        return source  # no checksum: refused below unless --allow-unverified
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
        progress = TtyProgress(f"downloading {Path(source.url).name}")
        try:
            with dest.open("xb") as f:
                fetcher.download(source.url, f, progress)
        finally:
            progress.finish()
    dest.chmod(0o644)  # IB's installer runs as another user and must read itself


def check_unverified(source: Source, allow_unverified: bool) -> None:
    """Refuse a download with no checksum to compare with, unless the user accepted that."""
    if source.url is None or source.expected_sha256 is not None or allow_unverified:
        return
    if source.component is Component.GATEWAY:
        why = (
            "IB publishes no checksum for its installer. Pin one with --sha256 HEX (the sha256 "
            "of an installer you trust), install a file you downloaded with --from FILE, or "
            "pass --allow-unverified to install it unchecked"
        )
    else:
        why = (
            f"{source.checksum_url} was not found. Pin one with --ibc-sha256 HEX, install a "
            "zip you checked with --ibc-from ZIP, or pass --allow-unverified"
        )
    raise UnverifiedError(
        f"{source.component.title}: refusing to install {source.url} without a checksum: "
        f"{why}; nothing was installed"
    )


def check_root_only(directory: Path) -> None:
    """Refuse a directory install-gateway writes in that is a link or that others can write."""
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        kind = (
            "a symbolic link" if stat.S_ISLNK(st.st_mode) else f"mode {stat.S_IMODE(st.st_mode):o}"
        )
        raise InstallError(
            f"{directory} must be a directory that only root can write (it is {kind}, owner "
            f"uid {st.st_uid}): another user could plant links there that root would follow; "
            f"fix it with: chown root:root {directory} && chmod go-w {directory}"
        )


def check_prefix_safe(prefix: Path) -> None:
    """Refuse a prefix that a user other than root could redirect with a planted link.

    Like ssh's StrictModes: the prefix (as far as it exists) and every directory above it must
    belong to root and be writable by no one else, except a sticky directory (like /tmp) whose
    next component belongs to root. Symbolic links on the way are resolved first.
    """
    real = Path(os.path.realpath(prefix))
    existing = real
    while not existing.exists():
        existing = existing.parent
    chain = [*reversed(existing.parents), existing]
    for i, directory in enumerate(chain):
        st = directory.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise InstallError(f"--prefix: {directory} is not a directory")
        writable_by_others = st.st_uid != 0 or st.st_mode & 0o022
        if not writable_by_others:
            continue
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if (
            st.st_uid == 0
            and st.st_mode & stat.S_ISVTX
            and nxt is not None
            and nxt.lstat().st_uid == 0
        ):
            continue  # sticky: others cannot replace root's entry
        owner = st.st_uid
        raise InstallError(
            f"--prefix {prefix}: {directory} can be changed by a user other than root (owner uid "
            f"{owner}, mode {stat.S_IMODE(st.st_mode):o}), who could redirect what "
            "install-gateway writes as root; use a prefix only root can write, such as "
            "/opt/ibgwd (the default)"
        )


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
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "wb") as f:
            f.write(data.replace(old_b, new_b))
        changed.append(path)
    return changed


def extract_ibc(zip_path: Path, target: Path) -> None:
    """Unpack IBC's release zip: modes masked (no setuid, setgid or group/other write), the
    scripts made executable."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            target.mkdir(mode=0o755)
            for info in archive.infolist():
                parts = Path(info.filename).parts
                if info.filename.startswith("/") or ".." in parts:
                    raise InstallError(f"{zip_path}: unsafe member name {info.filename!r}")
                extracted = Path(archive.extract(info, target))
                mode = (info.external_attr >> 16) & MODE_MASK
                if info.is_dir():
                    extracted.chmod(0o755)
                else:
                    extracted.chmod(mode | 0o644 if mode else 0o644)
                if extracted.suffix == ".sh":
                    extracted.chmod(0o755)
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


def _gateway_version(source: Source, download: Path) -> Source:
    """The source with the version the installer carries (checked against one already known)."""
    try:
        embedded: str | None = read_version(download)
    except NotAnInstallerError as e:
        if source.version is not None:
            log.warning("installer version unreadable error=%s", e)
            return source
        raise InstallError(
            f"cannot tell which IB Gateway version {source.origin} is: {e}; pass --version "
            "V (the version IB shows for the download, e.g. 10.37.1o)"
        ) from e
    if source.version is None:
        return replace(source, version=embedded)
    if source.local_path is None and embedded != source.version:
        raise InstallError(
            f"{source.origin} is IB Gateway {embedded}, not {source.version} as announced; "
            "nothing was installed"
        )
    return source


def _run_gateway_installer(
    runner: InstallerRunner, download: Path, staging: Path, report: Callable[[str], None]
) -> Path:
    """Run IB's installer into ``staging/gateway-work/ibgateway``; return that tree, root's."""
    work = staging / "gateway-work"
    work.mkdir(mode=0o700)
    target = work / "ibgateway"
    report(f"IB Gateway: running IB's installer as user {INSTALL_USER} (about a minute)")
    runner.run(download, target)
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:  # the installer's user loses its way in before root reads what it wrote
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    if not target.is_dir() or target.is_symlink():
        raise InstallError("IB Gateway installer finished but created no installation directory")
    harden_tree(target)
    if not (target / GATEWAY_MARKER).is_dir():
        raise InstallError(f"IB Gateway installer finished but {GATEWAY_MARKER}/ is missing")
    return target


def run_install(
    layout: Layout,
    sources: list[Source],
    *,
    fetcher: Fetcher,
    runner: InstallerRunner,
    hooks: Hooks,
    force: bool = False,
    allow_unverified: bool = False,
    report: Callable[[str], None] = lambda _line: None,
) -> list[Installed]:
    """Install every source side by side by version and point ``current`` at it, or nothing."""
    prefix = Path(layout.prefix)
    check_prefix_safe(prefix)
    prefix.mkdir(mode=0o755, parents=True, exist_ok=True)
    check_root_only(prefix)
    components = [s.component for s in sources]
    for component in components:
        Path(layout.root(component)).mkdir(mode=0o755, exist_ok=True)
        check_root_only(Path(layout.root(component)))
    results: list[Installed] = []
    todo: list[tuple[Source, Path, str, bool]] = []
    with _locked(Path(layout.lock_file)):
        _remove_stale(layout, components)
        staging = Path(tempfile.mkdtemp(prefix=layout.staging_prefix, dir=prefix))
        staging.chmod(0o711)  # the installer's user may reach its work directory, not list
        tx = _Transaction()
        try:
            for source in sources:
                if source.version is not None:
                    final = Path(layout.version_dir(source.component, source.version))
                    if final.exists() and not force:
                        report(f"{source.component.title} {source.version}: already in {final}")
                        results.append(
                            Installed(source.component, source.version, final, None, False, True)
                        )
                        continue
                pinned = _with_published_checksum(source, fetcher)
                check_unverified(pinned, allow_unverified)
                download = staging / f"{source.component.value}.download"
                title = f"{source.component.title} {source.version or ''}".rstrip()
                report(f"{title}: fetching {source.origin}")
                _acquire(pinned, download, fetcher)
                hooks.checkpoint(f"fetched-{source.component.value}")
                digest = sha256_file(download)
                problem = checksum_problem(pinned, digest)
                if problem:
                    raise ChecksumError(problem)
                if source.component is Component.GATEWAY:
                    pinned = _gateway_version(pinned, download)
                assert pinned.version is not None
                final = Path(layout.version_dir(source.component, pinned.version))
                if source.version is None and final.exists() and not force:
                    report(f"{source.component.title} {pinned.version}: already in {final}")
                    results.append(
                        Installed(source.component, pinned.version, final, None, False, True)
                    )
                    continue
                verified = pinned.expected_sha256 is not None
                if not verified:
                    flag = "--sha256" if source.component is Component.GATEWAY else "--ibc-sha256"
                    report(
                        f"{source.component.title} {pinned.version}: sha256 {digest} "
                        f"(not verified: no pinned or published checksum; pin it with {flag})"
                    )
                todo.append((pinned, download, digest, verified))
            hooks.checkpoint("verified")
            built: list[tuple[Source, Path]] = []
            for source, download, _digest, _verified in todo:
                assert source.version is not None
                final = Path(layout.version_dir(source.component, source.version))
                if source.component is Component.GATEWAY:
                    tree = _run_gateway_installer(runner, download, staging, report)
                    relocate(tree, str(tree), str(final))
                else:
                    tree = staging / source.component.value
                    extract_ibc(download, tree)
                    if not (tree / IBC_MARKER).is_file():
                        raise InstallError(f"IBC zip has no {IBC_MARKER}")
                tree.chmod(0o755)
                hooks.checkpoint(f"built-{source.component.value}")
                built.append((source, tree))
            for source, tree in built:
                assert source.version is not None
                tx.commit_dir(tree, Path(layout.version_dir(source.component, source.version)))
                hooks.checkpoint(f"committed-{source.component.value}")
            for result in results:
                tx.switch_link(Path(layout.current(result.component)), result.version)
            for source, _tree in built:
                assert source.version is not None
                tx.switch_link(Path(layout.current(source.component)), source.version)
                hooks.checkpoint(f"switched-{source.component.value}")
        except BaseException:
            tx.rollback()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        tx.finish()
    for source, _download, digest, verified in todo:
        assert source.version is not None
        final = Path(layout.version_dir(source.component, source.version))
        results.append(Installed(source.component, source.version, final, digest, verified, False))
    order = {c: i for i, c in enumerate(components)}
    return sorted(results, key=lambda r: order[r.component])


def installed_versions(layout: Layout, component: Component) -> list[str]:
    """The version directories under ``<prefix>/<component>/``, sorted by name."""
    root = Path(layout.root(component))
    if not root.is_dir():
        return []
    return sorted(
        e.name
        for e in root.iterdir()
        if e.name != CURRENT and not e.name.startswith(".") and e.is_dir() and not e.is_symlink()
    )


def use_version(layout: Layout, component: Component, version: str) -> str | None:
    """Point ``current`` at an installed version (a rollback); return the previous target."""
    prefix = Path(layout.prefix)
    check_prefix_safe(prefix)
    final = Path(layout.version_dir(component, version))
    if not final.is_dir() or final.is_symlink():
        have = ", ".join(installed_versions(layout, component)) or "none"
        raise InstallError(
            f"{component.title} {version} is not installed under {layout.root(component)} "
            f"(installed: {have})"
        )
    check_root_only(Path(layout.root(component)))
    with _locked(Path(layout.lock_file)):
        link = Path(layout.current(component))
        if link.exists() and not link.is_symlink():
            raise InstallError(f"{link} exists and is not a symlink; move it away first")
        old = os.readlink(link) if link.is_symlink() else None
        _replace_link(link, version)
    return old


def current_version(layout: Layout, component: Component) -> str | None:
    """The version ``current`` points at, or None when nothing is installed."""
    link = Path(layout.current(component))
    return os.readlink(link) if link.is_symlink() else None
