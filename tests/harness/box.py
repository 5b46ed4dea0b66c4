"""A throwaway box running real systemd as PID 1: boot it, run commands inside, remove every trace.

A box is systemd in new pid/mount/uts/ipc/net/cgroup namespaces, confined to its own cgroup2
subtree, on an overlay root whose writable layer is a tmpfs that lives only in the box's mount
namespace. State on the host is limited to the cgroup directory and a state directory under
``/run/ibgwd-box/NAME`` (``meta.json`` + ``console.log``); ``stop()`` and ``gc()`` remove both.
Recipe and pitfalls: ``/work/shared/reference/harness.md`` section 1; usage: docs/testing.md.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

STATE_ROOT = Path("/run/ibgwd-box")
CGROUP_PREFIX = "ibgwd-box-"
REPO = Path(__file__).resolve().parents[2]
INNER = Path(__file__).resolve().with_name("inner.py")
HOST_PYTHON = "/usr/bin/python3"  # Debian's; the pyenv python first in PATH lacks gi
BOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
MAX_NAME = 40
# What the product installs or leaves behind: a box never sees the lower root's copy (a
# root-owned /var/lib/ibgwd left on the host by `ibgwd render` made ibgwd time out in boxes).
PRODUCT_STATE = (
    "/etc/ibgwd",
    "/etc/credstore/ibgwd",
    "/var/lib/ibgwd",
    "/var/cache/ibgwd",
    "/var/log/ibgwd",
    "/run/ibgwd",
    "/etc/systemd/system/ibgwd.service",
    "/etc/systemd/system/ibgwd@.service",
    "/etc/systemd/system/ibgwd.service.d",
    "/etc/systemd/system/ibgwd@.service.d",
    "/etc/systemd/system/multi-user.target.wants/ibgwd.service",
)
# Time a state dir may exist without a launcher before gc treats it as an abandoned start.
START_GRACE_S = 120.0

_counter = itertools.count(1)

Bind = tuple[str, str, bool]


class BoxError(RuntimeError):
    """The box could not be booted, entered or torn down."""


class BoxCommandError(subprocess.CalledProcessError):
    """A command inside the box exited non-zero; the message carries its output."""

    def __str__(self) -> str:
        def tail(s: object) -> str:
            return str(s or "").strip()[-2000:]

        return (
            f"{super().__str__()}\n--- stdout ---\n{tail(self.stdout)}"
            f"\n--- stderr ---\n{tail(self.stderr)}"
        )


def cgroup_base() -> Path:
    """Where box cgroups go: the cgroup2 root, or its ``unified`` mount on a hybrid host."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return root
    unified = root / "unified"
    if (unified / "cgroup.controllers").exists():
        return unified
    raise BoxError("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (to tell it from a reused pid), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie is as good as dead here
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    return pid is not None and started is not None and start_time(pid) == started


def cgroup_pids(cg: Path) -> list[int]:
    """Every process in the cgroup subtree. Sub-cgroups come and go while this walks (a unit
    stopping during teardown): one that vanished has no processes left to count."""
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(cg, onerror=lambda _exc: None):
        try:
            pids.extend(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
        except OSError:  # removed between the listing and the read
            continue
    return pids


def validate_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not set(name) <= NAME_CHARS or name[0] == "-":
        raise BoxError(
            f"box name {name!r} is invalid: use 1-{MAX_NAME} of a-z, 0-9 and '-', "
            "not starting with '-'"
        )
    return name


@dataclass(frozen=True)
class BoxState:
    """What ``meta.json`` records about a box, enough for ``stop`` and ``gc`` in another process."""

    name: str
    cgroup: str
    owner_pid: int | None  # None: a box for humans (box.sh), reaped only when its launcher dies
    owner_start: int | None
    created: float
    launcher_pid: int | None = None
    launcher_start: int | None = None
    pid: int | None = None  # systemd, as seen from the host

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.name

    def save(self) -> None:
        tmp = self.state_dir / "meta.json.tmp"
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(self.state_dir / "meta.json")

    @classmethod
    def load(cls, name: str) -> BoxState:
        try:
            data = json.loads((STATE_ROOT / name / "meta.json").read_text())
        except FileNotFoundError:
            raise BoxError(f"no box named {name!r} (no {STATE_ROOT / name}/meta.json)") from None
        return cls(**data)

    def launcher_alive(self) -> bool:
        return alive(self.launcher_pid, self.launcher_start)

    def owner_alive(self) -> bool:
        if self.owner_pid is None:
            return self.launcher_alive()
        return alive(self.owner_pid, self.owner_start)


class Box:
    """One running box. Make it with ``Box.start()``; always ``stop()`` it (idempotent)."""

    def __init__(self, state: BoxState, launcher: subprocess.Popen[bytes] | None = None) -> None:
        self._state = state
        self._launcher = launcher
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        name: str | None = None,
        *,
        lower: Path | None = None,
        binds: Sequence[Bind] = (),
        unmask: Sequence[str] = (),
        remove_policy_rc_d: bool = True,
        owned: bool = True,
        boot_timeout_s: float = 60.0,
    ) -> Box:
        """Boot a box and wait until ``systemctl is-system-running`` says running or degraded.

        ``lower`` is the overlay's read-only layer (default: the host's ``/``; or a debootstrap
        rootfs, see ``debian_rootfs``). ``binds`` are ``(host_path, box_path, read_only)``.
        When ``lower`` does not show the repository (another root, or the repo on another
        mount), the repository is bound read-only at its own path. ``unmask`` names host-enabled
        units to leave unmasked. ``owned``: the box dies with the calling thread (pytest);
        the CLI passes False so a box outlives ``box.sh start``.
        """
        base = cgroup_base()
        STATE_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = cls._claim(name)
        owner = os.getpid() if owned else None
        state = BoxState(
            name=name,
            cgroup=str(base / f"{CGROUP_PREFIX}{name}"),
            owner_pid=owner,
            owner_start=start_time(owner) if owner else None,
            created=time.time(),
        )
        state.save()
        box = cls(state)
        try:
            box._launch(lower, list(binds), list(unmask), remove_policy_rc_d, owned)
            box._wait_running(boot_timeout_s)
        except BaseException as e:
            console = box.console()
            box.stop()
            if isinstance(e, BoxError):
                raise BoxError(f"{e}\n--- console of box {name} ---\n{console}") from None
            raise
        return box

    @staticmethod
    def _claim(name: str | None) -> str:
        """Reserve a unique name by creating its state dir (atomic across processes)."""
        while True:
            n = validate_name(name) if name else f"t{os.getpid()}-{next(_counter)}"
            try:
                (STATE_ROOT / n).mkdir(mode=0o700)
            except FileExistsError:
                if name:
                    raise BoxError(
                        f"a box named {name!r} exists already ({STATE_ROOT / n})"
                    ) from None
                continue
            if Path(cgroup_base(), f"{CGROUP_PREFIX}{n}").exists():
                (STATE_ROOT / n).rmdir()
                if name:
                    raise BoxError(f"cgroup of box {name!r} exists already; run `box.sh gc`")
                continue
            return n

    def _launch(
        self,
        lower: Path | None,
        binds: list[Bind],
        unmask: list[str],
        remove_policy_rc_d: bool,
        owned: bool,
    ) -> None:
        st = self._state
        root = Path("/") if lower is None else lower.resolve()
        if not (root / "lib/systemd/systemd").exists():
            raise BoxError(f"lower root {root} has no /lib/systemd/systemd")
        if not self._lower_shows_repo(root) and all(b[1] != str(REPO) for b in binds):
            binds.append((str(REPO), str(REPO), True))
        for host, _box, _ro in binds:
            if not Path(host).exists():
                raise BoxError(f"bind source {host!r} does not exist")
        cfg = {
            "name": st.name,
            "state_dir": str(st.state_dir),
            "lower": str(root),
            "binds": binds,
            "unmask": unmask,
            "remove_policy_rc_d": remove_policy_rc_d,
            "hide": list(PRODUCT_STATE),
        }
        Path(st.cgroup).mkdir()
        # The shell moves itself into the box cgroup BEFORE unshare, so that --cgroup makes that
        # cgroup the box's root. --kill-child: systemd dies with the launcher; with pdeathsig the
        # launcher dies with the thread that started it (a SIGKILLed pytest leaves no box).
        argv = [
            "/bin/sh",
            "-c",
            'echo $$ > "$0/cgroup.procs" && exec "$@"',
            st.cgroup,
            "/usr/bin/unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--cgroup",
            "--propagation",
            "private",
            HOST_PYTHON,
            "-I",
            "-S",
            str(INNER),
            json.dumps(cfg),
        ]
        if owned:
            argv = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", *argv]
        (st.state_dir / "mnt").mkdir()
        with open(st.state_dir / "console.log", "wb") as console:
            self._launcher = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": BOX_PATH, "LANG": "C.UTF-8"},
            )
        lp = self._launcher.pid
        self._state = replace(st, launcher_pid=lp, launcher_start=start_time(lp))
        self._state.save()

    @staticmethod
    def _lower_shows_repo(root: Path) -> bool:
        """The host-overlay shows the repo only if it sits on the root file system itself, and
        not under /tmp, /run or /dev, which the box mounts afresh."""
        hidden = ("/tmp", "/run", "/dev", "/proc", "/sys")
        if any(Path(h) == REPO or Path(h) in REPO.parents for h in hidden):
            return False
        return root == Path("/") and os.stat(REPO).st_dev == os.stat("/").st_dev

    def _wait_running(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        lp = self._state.launcher_pid
        assert lp is not None
        pid = None
        while pid is None:
            self._check_launcher()
            try:
                children = Path(f"/proc/{lp}/task/{lp}/children").read_text().split()
                if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "systemd":
                    pid = int(children[0])
            except FileNotFoundError:
                pass
            if pid is None:
                self._sleep_until(deadline, "systemd to start")
        self._state = replace(self._state, pid=pid)
        self._state.save()
        last = ""
        while True:
            self._check_launcher()
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                r = self.run(
                    "systemctl", "is-system-running", "--wait", check=False, timeout=remaining
                )
                last = (r.stdout + r.stderr).strip()
                if r.stdout.strip() in ("running", "degraded"):
                    break
            except subprocess.TimeoutExpired:
                pass
            self._sleep_until(deadline, f"the system to be running (last: {last!r})")
        if r.stdout.strip() == "degraded":
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            log.warning("box=%s state=degraded failed=%r", self.name, failed.strip())
        log.info("box=%s pid=%d state=%s", self.name, pid, r.stdout.strip())

    def _check_launcher(self) -> None:
        assert self._launcher is not None
        rc = self._launcher.poll()
        if rc is not None:
            raise BoxError(f"box {self.name}: launcher exited with status {rc} during boot")

    def _sleep_until(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise BoxError(f"box {self.name}: timed out waiting for {what}")
        time.sleep(0.05)

    @classmethod
    def attach(cls, name: str) -> Box:
        """A handle on a running box made by another process (the CLI uses this)."""
        state = BoxState.load(validate_name(name))
        if state.pid is None or not state.launcher_alive():
            raise BoxError(f"box {name!r} is not running; `box.sh gc` cleans it up")
        return cls(state)

    def stop(self, stop_timeout_s: float = 30.0) -> None:
        """Power off (SIGRTMIN+4), wait, SIGKILL after ``stop_timeout_s``, remove all host state.

        Idempotent; safe on a box that never finished booting.
        """
        if self._stopped:
            return
        teardown(self._state, self._launcher, stop_timeout_s)
        self._stopped = True

    def __enter__(self) -> Box:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- accessors ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def pid(self) -> int:
        """systemd's pid, as the host sees it."""
        if self._state.pid is None:
            raise BoxError(f"box {self.name} has no systemd yet")
        return self._state.pid

    @property
    def cgroup(self) -> Path:
        return Path(self._state.cgroup)

    @property
    def state_dir(self) -> Path:
        return self._state.state_dir

    @property
    def launcher_pid(self) -> int | None:
        return self._state.launcher_pid

    @property
    def bus_address(self) -> str:
        """The box's system bus, for host-side clients (dasbus AddressedMessageBus, busctl)."""
        return f"unix:path=/proc/{self.pid}/root/run/dbus/system_bus_socket"

    def path(self, p: str) -> Path:
        """The host path of ``p`` inside the box (via /proc/PID/root).

        Absolute symlinks inside the box resolve against the HOST root on this path.
        """
        return Path(f"/proc/{self.pid}/root") / p.lstrip("/")

    def console(self) -> str:
        """The launcher's and systemd's console output (before journald takes over)."""
        try:
            return (self.state_dir / "console.log").read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return ""

    # -- running things ----------------------------------------------------------------------

    def command(self, *argv: str, user: str | None = None, network: bool = True) -> list[str]:
        """The host argv that runs ``argv`` in the box (``network=False``: host network).

        The process joins the box's cgroup, so teardown accounts for it.
        """
        ns = ["-m", "-u", "-i", "-p", "-C", "-r", "-w"] + (["-n"] if network else [])
        cmd = list(argv)
        if user is not None:
            uid, gid, _home = self._passwd(user)
            cmd = [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--init-groups",
                "--",
                *cmd,
            ]
        return [
            "/bin/sh",
            "-c",
            'echo $$ > "$0/cgroup.procs" && exec "$@"',
            str(self.cgroup),
            "/usr/bin/nsenter",
            "-t",
            str(self.pid),
            *ns,
            "--",
            *cmd,
        ]

    def environment(
        self, user: str | None = None, env: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """A clean environment for a command in the box (not the caller's PATH)."""
        who, home = ("root", "/root") if user is None else (user, self._passwd(user)[2])
        base = {
            "PATH": BOX_PATH,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "HOME": home,
            "USER": who,
            "LOGNAME": who,
        }
        return base | dict(env or {})

    def _passwd(self, user: str) -> tuple[int, int, str]:
        for line in self.path("/etc/passwd").read_text().splitlines():
            f = line.split(":")
            if len(f) >= 7 and f[0] == user:
                return int(f[2]), int(f[3]), f[5]
        raise BoxError(f"no user {user!r} in box {self.name}'s /etc/passwd")

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float | None = 60,
        user: str | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the box (its namespaces, its network); output is captured text."""
        return self._run(argv, True, check, timeout, user, input, env)

    def hrun(
        self,
        *argv: str,
        check: bool = True,
        timeout: float | None = 60,
        user: str | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Like ``run`` but on the HOST network (box files): for apt-get against the mirror."""
        return self._run(argv, False, check, timeout, user, input, env)

    def _run(
        self,
        argv: Sequence[str],
        network: bool,
        check: bool,
        timeout: float | None,
        user: str | None,
        input: str | None,
        env: Mapping[str, str] | None,
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            self.command(*argv, user=user, network=network),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environment(user, env),
            check=False,
        )
        if check and r.returncode != 0:
            raise BoxCommandError(r.returncode, list(argv), r.stdout, r.stderr)
        return r

    def copy_in(self, src: Path, dst: str) -> None:
        """Copy a host file or directory tree to ``dst`` in the box (parents are created)."""
        target = self.path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)

    def journal(self, unit: str | None = None) -> str:
        """This boot's journal of the box, or of one unit."""
        argv = ["journalctl", "-b", "--no-pager", "-o", "short-precise"]
        if unit is not None:
            argv += ["-u", unit]
        return self.run(*argv, check=False).stdout

    def __repr__(self) -> str:
        return f"Box(name={self.name!r}, pid={self._state.pid})"


def teardown(
    state: BoxState, launcher: subprocess.Popen[bytes] | None, stop_timeout_s: float = 30.0
) -> None:
    """Stop a box (gracefully if it runs) and remove its cgroup subtree and state dir."""
    cg = Path(state.cgroup)
    if state.launcher_alive() or (launcher is not None and launcher.poll() is None):
        if state.pid is not None and _is_child(state.launcher_pid, state.pid):
            _signal(state.pid, signal.SIGRTMIN + 4)  # systemd: poweroff
        else:
            _kill_launcher(state, launcher)
        if not _wait_launcher(state, launcher, stop_timeout_s):
            log.warning("box=%s event=stop-timeout action=sigkill", state.name)
            _kill_launcher(state, launcher)
            _wait_launcher(state, launcher, 10.0)
    elif launcher is not None:
        launcher.wait()
    _empty_and_remove_cgroup(cg)
    shutil.rmtree(state.state_dir, ignore_errors=True)
    log.info("box=%s event=removed", state.name)


def _is_child(parent: int | None, pid: int) -> bool:
    try:
        return str(pid) in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return False


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _kill_launcher(state: BoxState, launcher: subprocess.Popen[bytes] | None) -> None:
    if launcher is not None:
        if launcher.poll() is None:
            launcher.kill()
    elif state.launcher_alive():
        assert state.launcher_pid is not None
        _signal(state.launcher_pid, signal.SIGKILL)


def _wait_launcher(
    state: BoxState, launcher: subprocess.Popen[bytes] | None, timeout_s: float
) -> bool:
    if launcher is not None:
        try:
            launcher.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout_s
    while state.launcher_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _empty_and_remove_cgroup(cg: Path, timeout_s: float = 15.0) -> None:
    """Kill stragglers (cgroup.kill), then rmdir the subtree depth-first; retry while busy."""
    deadline = time.monotonic() + timeout_s
    while cg.exists():  # another process's gc may remove it concurrently
        if cgroup_pids(cg):
            try:
                (cg / "cgroup.kill").write_text("1")
            except OSError:
                for pid in cgroup_pids(cg):
                    _signal(pid, signal.SIGKILL)
        try:
            dirs = sorted((d for d in cg.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
            for d in [*dirs, cg]:
                d.rmdir()
            return
        except FileNotFoundError:
            continue
        except OSError as e:
            if time.monotonic() > deadline:
                raise BoxError(
                    f"cannot remove cgroup {cg}: {e}; processes left: {cgroup_pids(cg)}"
                ) from None
            time.sleep(0.1)


def list_boxes() -> Iterator[BoxState]:
    """Every box with a state dir on this machine (any owner)."""
    if not STATE_ROOT.is_dir():
        return
    for d in sorted(STATE_ROOT.iterdir()):
        try:
            yield BoxState.load(d.name)
        except (BoxError, json.JSONDecodeError, TypeError):
            continue


def gc() -> list[str]:
    """Remove boxes whose owner or launcher is dead, and orphaned box cgroups; returns names.

    Boxes of live owners (other engineers' test runs, running ``box.sh`` boxes) are left alone.
    """
    reaped: list[str] = []
    if STATE_ROOT.is_dir():
        for d in sorted(STATE_ROOT.iterdir()):
            try:
                state: BoxState | None = BoxState.load(d.name)
            except (BoxError, json.JSONDecodeError, TypeError):
                state = None
            if state is None:
                # A start in progress writes meta.json right after claiming; give it time.
                age_s = 0.0
                with contextlib.suppress(FileNotFoundError):
                    age_s = time.time() - d.stat().st_mtime
                if d.exists() and age_s > START_GRACE_S:
                    shutil.rmtree(d, ignore_errors=True)
                    reaped.append(d.name)
                continue
            starting = state.launcher_pid is None and time.time() - state.created < START_GRACE_S
            if starting and state.owner_alive():
                continue
            if state.owner_alive() and state.launcher_alive():
                continue
            teardown(state, None, stop_timeout_s=10.0)
            reaped.append(state.name)
    base = cgroup_base()
    for cg in base.glob(f"{CGROUP_PREFIX}*"):
        name = cg.name.removeprefix(CGROUP_PREFIX)
        if not (STATE_ROOT / name).exists() and not cgroup_pids(cg):
            _empty_and_remove_cgroup(cg)
            reaped.append(name)
    if reaped:
        log.info("event=gc reaped=%s", ",".join(reaped))
    return reaped
