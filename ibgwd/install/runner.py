"""Running IB's installer unprivileged, and making what it wrote root's.

IB's installer is a downloaded program that IB publishes no checksum for, so it never runs as
root. It runs as the system user ``ibgwd-install`` (created on first use), with an empty
environment, inside a work directory that only that user may write:

- when systemd is PID 1: as a transient service (``systemd-run --wait --pipe``) with
  ``ProtectSystem=strict`` and ``ReadWritePaths=`` the work directory, ``PrivateTmp=``,
  ``NoNewPrivileges=`` and no capabilities; systemd kills whatever it leaves behind;
- otherwise (a container build): through ``setpriv`` with no groups, no capabilities and
  ``no_new_privs``, in its own session, whose process group is killed when it exits.

Afterwards :func:`harden_tree` makes every file root's (walking by file descriptor, never
following a link), masks the modes (no setuid/setgid/sticky bits, no group or other write) and
refuses links that point outside the tree and hard links, so that nothing the installer's user
planted can make a later write by root land elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ibgwd.errors import InstallError

log = logging.getLogger(__name__)

INSTALL_USER = "ibgwd-install"
INSTALL_USER_GECOS = "ibgwd install-gateway (runs IB's installer)"
SYSTEMD_BOOTED = Path("/run/systemd/system")
MODE_MASK = 0o755  # no setuid/setgid/sticky, no group or other write
SANDBOX = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictSUIDSGID=yes",
    "CapabilityBoundingSet=",
    "LimitCORE=0",
)


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def ensure_install_user(name: str = INSTALL_USER) -> Account:
    """The unprivileged account that runs IB's installer, created (as a system user) if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_user(name)
        try:
            entry = pwd.getpwnam(name)
        except KeyError as e:
            raise InstallError(f"could not create the system user {name!r}") from e
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise InstallError(f"the user {name!r} must not be root (uid {entry.pw_uid})")
    return Account(name, entry.pw_uid, entry.pw_gid)


def _create_user(name: str) -> None:
    if shutil.which("systemd-sysusers"):
        argv = ["systemd-sysusers", "--inline", f'u {name} - "{INSTALL_USER_GECOS}" /nonexistent']
    elif shutil.which("useradd"):
        argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", INSTALL_USER_GECOS,
                name]  # fmt: skip
    else:
        raise InstallError(f"cannot create the system user {name!r}: no systemd-sysusers/useradd")
    log.info("creating system user=%s", name)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise InstallError(f"{argv[0]} could not create the user {name!r}: {proc.stderr.strip()}")


def installer_unit_name(prefix: Path) -> str:
    """``ibgwd-gateway-installer-<8 hex digits of the prefix>.service``."""
    digest = hashlib.sha256(str(prefix).encode()).hexdigest()[:8]
    return f"ibgwd-gateway-installer-{digest}.service"


def _check_reachable(directory: Path, account: Account) -> None:
    """The installer's user must be able to enter every directory down to its work directory."""
    for d in [*reversed(directory.parents), directory]:
        st = d.stat()
        if st.st_uid == account.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == account.gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise InstallError(
                f"IB's installer runs as the user {account.name}, who cannot enter {d} (mode "
                f"{stat.S_IMODE(st.st_mode):o}); use a --prefix below directories that others "
                "may enter (o+x), such as /opt/ibgwd (the default); nothing was installed"
            )


def _tail(output: bytes) -> str:
    return " | ".join(output.decode("utf-8", "replace").strip().splitlines()[-5:])


class UnprivilegedInstallerRunner:
    """Runs ``sh INSTALLER -q -dir TARGET`` (install4j's unattended mode) as ``ibgwd-install``.

    ``TARGET``'s parent is the work directory: it must be a fresh directory only root can reach
    by name; it is given to the installer's user, which also gets its HOME and temporary
    directory there (install4j unpacks itself next to ``INSTALL4J_TEMP`` and keeps preferences
    under HOME).
    """

    def __init__(self, timeout_s: float = 1800.0, user: str = INSTALL_USER) -> None:
        self._timeout_s = timeout_s
        self._user = user

    def run(self, installer: Path, target: Path) -> None:
        account = ensure_install_user(self._user)
        work = target.parent
        _check_reachable(work.parent, account)
        home = work / "home"
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, account.uid, account.gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        env = {
            "HOME": str(home),
            "INSTALL4J_TEMP": str(home),
            "TMPDIR": str(home),
            "LANG": "C.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        script = ["/bin/sh", "-c", 'mkdir -m 700 "$HOME" && exec /bin/sh "$@"', "sh"]
        argv = [*script, str(installer), "-q", "-dir", str(target)]
        if SYSTEMD_BOOTED.is_dir() and shutil.which("systemd-run"):
            self._run_unit(account, work, env, argv)
        else:
            self._run_setpriv(account, work, env, argv)

    def _run_unit(self, account: Account, work: Path, env: dict[str, str], argv: list[str]) -> None:
        # One name per prefix: an installer left running by a killed install-gateway is
        # stopped here (the caller holds the prefix's lock), never run twice side by side.
        unit = installer_unit_name(work.parent.parent)
        subprocess.run(["systemctl", "stop", unit], capture_output=True, timeout=120, check=False)
        cmd = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", f"--unit={unit}",
               f"--uid={account.uid}", f"--gid={account.gid}", f"--working-directory={work}",
               "--description=IB Gateway installer (ibgwd install-gateway)",
               f"--property=ReadWritePaths={work}",
               f"--property=RuntimeMaxSec={self._timeout_s:.0f}"]  # fmt: skip
        cmd += [f"--property={p}" for p in SANDBOX]
        cmd += [f"--setenv={k}={v}" for k, v in env.items()]
        log.info("run installer unit=%s user=%s work=%s", unit, account.name, work)
        try:
            proc = subprocess.run(
                [*cmd, "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self._timeout_s + 60,
                check=False,
            )
        except BaseException as e:  # a timeout or Ctrl-C: the unit must not outlive us
            subprocess.run(
                ["systemctl", "stop", unit], capture_output=True, timeout=120, check=False
            )
            if isinstance(e, subprocess.TimeoutExpired):
                raise InstallError(
                    f"IB Gateway installer did not finish within {self._timeout_s:.0f} s"
                ) from e
            raise
        if proc.returncode != 0:
            raise InstallError(
                f"IB Gateway installer exited with status {proc.returncode} "
                f"(as user {account.name}): {_tail(proc.stdout)}"
            )

    def _run_setpriv(
        self, account: Account, work: Path, env: dict[str, str], argv: list[str]
    ) -> None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise InstallError("cannot drop privileges for IB's installer: setpriv is missing")
        cmd = [setpriv, f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups",
               "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
               "--pdeathsig=SIGKILL", "--"]  # fmt: skip
        log.info("run installer setpriv user=%s work=%s", account.name, work)
        proc = subprocess.Popen(
            [*cmd, *argv],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=self._timeout_s)
        except subprocess.TimeoutExpired as e:
            raise InstallError(
                f"IB Gateway installer did not finish within {self._timeout_s:.0f} s"
            ) from e
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # what it left behind in its session
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise InstallError(
                f"IB Gateway installer exited with status {proc.returncode} "
                f"(as user {account.name}): {_tail(out)}"
            )


def _inside(link_dir: PurePosixPath, target: str) -> bool:
    """Whether a relative link in ``link_dir`` (relative to the tree) stays inside the tree."""
    if target.startswith("/"):
        return False
    depth = 0
    for part in (*link_dir.parts, *PurePosixPath(target).parts):
        if part == "..":
            depth -= 1
        elif part not in (".", ""):
            depth += 1
        if depth < 0:
            return False
    return True


def harden_tree(top: Path) -> int:
    """Make ``top`` and everything below root:root with masked modes; return the entries seen.

    Walks by directory file descriptor and opens every entry with ``O_NOFOLLOW``, fixing each
    directory before reading its entries. Refuses (InstallError) symbolic links leading
    outside ``top``, hard links and special files. Run it only once nothing of the installer's
    user runs any more.
    """
    count = 0
    stack: list[tuple[int, PurePosixPath]] = []
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    stack.append((top_fd, PurePosixPath(".")))
    try:
        _fix_fd(top_fd, top)
        while stack:
            dir_fd, rel = stack.pop()
            try:
                for name in os.listdir(dir_fd):
                    count += 1
                    child = rel / name
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        target = os.readlink(name, dir_fd=dir_fd)
                        if not _inside(rel, target):
                            raise InstallError(
                                "the installer left a link leading outside its directory: "
                                f"{child} -> {target}; nothing was installed"
                            )
                        os.chown(name, 0, 0, dir_fd=dir_fd, follow_symlinks=False)
                        continue
                    is_dir = stat.S_ISDIR(st.st_mode)
                    if not (is_dir or stat.S_ISREG(st.st_mode)):
                        raise InstallError(
                            f"the installer left a special file {child}; nothing was installed"
                        )
                    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                    fd = os.open(name, flags | (os.O_DIRECTORY if is_dir else 0), dir_fd=dir_fd)
                    if is_dir:
                        stack.append((fd, child))
                        _fix_fd(fd, top / child)
                    else:
                        try:
                            _fix_fd(fd, top / child)
                        finally:
                            os.close(fd)
            finally:
                os.close(dir_fd)
    finally:
        for fd, _rel in stack:
            os.close(fd)
    return count


def _fix_fd(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise InstallError(f"the installer left a hard link {path}; nothing was installed")
    os.fchown(fd, 0, 0)
    owner = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
    os.fchmod(fd, stat.S_IMODE(st.st_mode) & MODE_MASK | owner)
