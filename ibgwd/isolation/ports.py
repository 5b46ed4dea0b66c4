"""Instances never collide: no two conffiles in the configuration directory may give the same
local port (API, relay, IBC command server, VNC, metrics) or X display to two instances, and
before READY the API port must be held by a process of the instance's own IBC unit."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ibgwd import names
from ibgwd.config import sources, spec, validate
from ibgwd.config.kinds import split_host_port
from ibgwd.config.model import Mode, Settings
from ibgwd.errors import Problem
from ibgwd.probes.api import Outcome, ProbeResult

log = logging.getLogger(__name__)

CONFFILE_SUFFIX = ".conf"


@dataclass(frozen=True)
class Claim:
    """One local resource an instance takes: ("port", 4002) or ("display", 1)."""

    kind: str
    number: int
    setting: str


def claims(settings: Settings) -> list[Claim]:
    """Every local port and the X display the instance's settings take."""
    by_mode = {
        Mode.LIVE: (spec.API_PORT_LIVE, spec.RELAY_PORT_LIVE, spec.COMMAND_PORT_LIVE),
        Mode.PAPER: (spec.API_PORT_PAPER, spec.RELAY_PORT_PAPER, spec.COMMAND_PORT_PAPER),
    }
    out: list[Claim] = []
    for g in settings.gateways:
        api_s, relay_s, command_s = by_mode[g.mode]
        out += [
            Claim("port", g.api_port, api_s.name),
            Claim("port", g.command_port, command_s.name),
        ]
        if g.relay_port:
            out.append(Claim("port", g.relay_port, relay_s.name))
    if settings.vnc_enabled:
        out.append(Claim("port", settings.vnc_port, spec.VNC_PORT.name))
    if settings.metrics_address:
        port = split_host_port(settings.metrics_address)[1]
        out.append(Claim("port", port, spec.METRICS_ADDRESS.name))
    out.append(Claim("display", settings.display, spec.DISPLAY_NUMBER.name))
    return out


def instance_of(conffile: Path) -> str | None:
    """The instance a conffile configures (`ibgwd.conf` = default), None if it is not one."""
    if conffile.suffix != CONFFILE_SUFFIX:
        return None
    stem = conffile.stem
    if stem == "ibgwd":
        return names.DEFAULT_INSTANCE
    if stem == names.DEFAULT_INSTANCE or not names.is_valid_instance(stem):
        return None
    return stem


def other_instances(instance: str, config_dir: Path) -> Iterator[tuple[str, Path, Settings]]:
    """The other instances' settings as their conffiles (and the defaults) give them: their
    environment and credentials are not ours to read, so a conffile with problems (a password
    that comes as a credential) still counts with what it says."""
    try:
        entries = sorted(config_dir.iterdir())
    except OSError:
        return
    for path in entries:
        other = instance_of(path)
        if other is None or other == instance or not path.is_file():
            continue
        if not os.access(path, os.R_OK):  # unreadable: its ports are unknown, not the defaults
            log.warning("event=conffile_unreadable path=%s (port overlap not checked)", path)
            continue
        raw = sources.gather(conffile=path, environ={}, credentials_dir=None)
        settings, _problems = validate.build(other, raw.values, installed_versions=())
        yield other, path, settings


def collisions(
    instance: str, conffile: Path, settings: Settings, config_dir: Path
) -> list[Problem]:
    """Problems for every port or display this instance shares with another conffile."""
    problems: list[Problem] = []
    mine = claims(settings)
    for other, path, other_settings in other_instances(instance, config_dir):
        theirs = {(c.kind, c.number): c for c in claims(other_settings)}
        for claim in mine:
            clash = theirs.get((claim.kind, claim.number))
            if clash is None:
                continue
            what = "port" if claim.kind == "port" else "X display"
            problems.append(
                Problem(
                    claim.setting,
                    str(claim.number),
                    f"a {what} no other instance uses",
                    f"{what} {claim.number} is also {clash.setting} of instance {other} in "
                    f"{path}; this is {conffile}: give one of them another {what}",
                )
            )
    return problems


# ---- who holds a port -----------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    inode: int
    uid: int


def listeners(port: int, proc: Path = Path("/proc")) -> list[Listener]:
    """Sockets listening on TCP `port` (IPv4 and IPv6), from /proc/net/tcp{,6}: readable
    without privileges, unlike other users' /proc/PID/fd (which needs CAP_SYS_PTRACE)."""
    found: list[Listener] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.append(Listener(inode=int(fields[9]), uid=int(fields[7])))
    return found


def pids_holding(inodes: set[int], proc: Path = Path("/proc")) -> set[int]:
    """PIDs with one of the socket inodes open (only those whose fds we may read)."""
    wanted = {f"socket:[{i}]" for i in inodes}
    pids: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list(os.scandir(entry / "fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd.path) in wanted:
                    pids.add(int(entry.name))
                    break
            except OSError:
                continue
    return pids


def unit_of(pid: int, proc: Path = Path("/proc")) -> str:
    """The systemd unit a process runs in: the last `.service` of its cgroup v2 path."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("0::"):
            parts = [p for p in line[3:].split("/") if p.endswith(".service")]
            return parts[-1] if parts else ""
    return ""


def foreign_holder(port: int, uid: int, unit: str, proc: Path = Path("/proc")) -> str:
    """Why `port` is not the instance's own, or "" when it is (or nothing listens yet).

    The listening socket must belong to the instance's user, which nothing outside the
    instance runs as; where the holding processes can be seen, one must run in `unit`."""
    found = listeners(port, proc)
    if not found:
        return ""
    foreign = sorted({f.uid for f in found if f.uid != uid})
    if foreign:
        return f"TCP port {port} is held by a process of uid {', '.join(map(str, foreign))}"
    pids = pids_holding({f.inode for f in found}, proc)
    units = {unit_of(pid, proc) for pid in pids}
    if pids and unit not in units:
        return f"TCP port {port} is held by {', '.join(sorted(units))}, not {unit}"
    return ""


def guarded(
    probe: Callable[[], ProbeResult], port: int, user: str, unit: str
) -> Callable[[], ProbeResult]:
    """A probe that first checks who holds the port: a squatter or another instance's
    Gateway is never taken for ours (no READY, no relay to it)."""

    def run() -> ProbeResult:
        if not listeners(port):
            return probe()  # nothing listens: the probe reports it (refused)
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            return ProbeResult(Outcome.ERROR, 0.0, detail=f"no user {user}")
        reason = foreign_holder(port, uid, unit)
        if reason:
            log.warning("event=port_not_ours port=%d unit=%s reason=%s", port, unit, reason)
            return ProbeResult(Outcome.ERROR, 0.0, detail=reason)
        return probe()

    return run
