"""Build (once) and cache a clean Debian root for boxes, with debootstrap from the host's mirror."""

from __future__ import annotations

import fcntl
import logging
import re
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SUITE = "bookworm"
INCLUDE = "systemd,systemd-sysv,dbus"
DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ONE_LINE_SOURCES = Path("/etc/apt/sources.list")
COMPLETE = ".ibgwd-box-complete"


def host_mirror(
    suite: str = SUITE,
    deb822: Path = DEB822_SOURCES,
    one_line: Path = ONE_LINE_SOURCES,
) -> str:
    """The Debian mirror the host's apt uses for ``suite`` (never a name written in the repo)."""
    if deb822.exists():
        for stanza in re.split(r"\n\s*\n", deb822.read_text()):
            fields: dict[str, str] = dict(
                (k.strip(), v.strip())
                for k, _, v in (ln.partition(":") for ln in stanza.splitlines())
                if not k.startswith("#")
            )
            if suite in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    if one_line.exists():
        for line in one_line.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == suite:
                return m.group(1)
    raise RuntimeError(f"no apt source for suite {suite!r} in {deb822} or {one_line}")


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == prefix or target.startswith(prefix + "/"):
            found.append(target)
    return found


def _remove_tree(path: Path) -> None:
    """rm -rf, after unmounting what a killed debootstrap may have left mounted inside."""
    for target in sorted(_mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)
    if _mounts_below(path):
        raise RuntimeError(f"refusing to delete {path}: still has mounts")
    shutil.rmtree(path, ignore_errors=True)


def debian_rootfs(cache_dir: Path, *, suite: str = SUITE, timeout_s: float = 900.0) -> Path:
    """A minbase Debian root with systemd and dbus under ``cache_dir``; built on first use.

    Concurrent callers (other test runs) wait on a lock and reuse the result. The tree is made
    under a temporary name and renamed when complete, so a killed build is never reused.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"debian-{suite}-minbase-systemd"
    target = cache_dir / name
    with open(cache_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / COMPLETE).exists():
            return target
        for leftover in cache_dir.glob(f"{name}.tmp*"):
            _remove_tree(leftover)
        if target.exists():
            _remove_tree(target)
        tmp = cache_dir / f"{name}.tmp"
        mirror = host_mirror(suite)
        log.info("event=debootstrap suite=%s target=%s mirror=%s", suite, target, mirror)
        argv = ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", suite, str(tmp)]
        r = subprocess.run(
            [*argv, mirror],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            check=False,
        )
        if r.returncode != 0:
            _remove_tree(tmp)
            raise RuntimeError(f"debootstrap failed ({r.returncode}):\n{r.stdout[-3000:]}")
        (tmp / COMPLETE).touch()
        tmp.rename(target)
        return target
