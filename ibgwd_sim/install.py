"""Lay out a fake IBC tree and a fake IB Gateway install tree that launch the simulation."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ibgwd_sim import simconf

DEFAULT_GATEWAY_VERSION = "10.30.1t"
DEFAULT_IBC_VERSION = "3.24.1"
PYTHON = "/usr/bin/python3"

SIM_CONF_TEMPLATE = """\
# Simulated gateway switches (read at every gateway start). See ibgwd_sim/README.md.
# Defaults behave like IBC 3.24.1 and the real Gateway; the commented keys compress time.
# Scenario = ok | twofa_pending | twofa_timeout | login_failed | no_login_dialog |
#            stall_after_start | api_zombie | api_slow | crash_after | existing_session |
#            autorestart_rejected | stale_token
Scenario = ok
# The password the login accepts (unset: any); a wrong one loops through "Login failed".
# AcceptUser =
# AcceptPassword =
# JVM launch -> login dialog (a real Gateway: several seconds)
StartupSeconds = 3
LoginSeconds = 1
# TwoFactorFor = none | live | paper | both
TwoFactorFor = none
# TwoFactorDialogSeconds = 185
# SecondFactorDevices = IB Key,SMS
ApiDelaySeconds = 5
CrashAfterSeconds = 5
Accounts = DU1234567
# "Shutdown progress" -> token -> exit (the real one takes 5-15 s)
ShutdownSeconds = 8
# RestartDelaySeconds = 2      (unset: a RESTART restarts at the next wall-clock minute)
# ClockOffsetSeconds = 0       (shift the clock the Gateway sees)
# ClockWeekday = sunday        (make the clock report that weekday)
"""

VMOPTIONS = """\
# Simulated IB Gateway VM options
-Xmx768m
-XX:+UseG1GC
-XX:MaxGCPauseMillis=200
-XX:ParallelGCThreads=20
-XX:ConcGCThreads=5
-XX:InitiatingHeapOccupancyPercent=70
-Dinstaller.uuid=00000000-0000-0000-0000-000000000000
-DvmOptionsPath=ibgateway.vmoptions
-Dsun.awt.nopixfmt=true
-Dsun.java2d.noddraw=true
-Dswing.boldMetal=false
-Dsun.locale.formatasdefault=true
"""


@dataclass(frozen=True)
class SimInstall:
    """Paths of an installed simulation, as ibgwd would be configured to use them."""

    prefix: Path
    gateway_version: str
    ibc_version: str

    @property
    def ibc_path(self) -> Path:
        return self.prefix / "ibc"

    @property
    def tws_path(self) -> Path:
        return self.prefix / "Jts"

    @property
    def ibcstart(self) -> Path:
        return self.ibc_path / "scripts" / "ibcstart.sh"

    @property
    def sim_conf(self) -> Path:
        return self.ibc_path / simconf.FILE_NAME

    @property
    def program_path(self) -> Path:
        return self.tws_path / "ibgateway" / self.gateway_version


def _launcher(module: str, source_root: Path) -> str:
    root = shlex.quote(str(source_root))
    return (
        "#!/bin/sh\n"
        "# Simulated gateway launcher written by `python -m ibgwd_sim install`.\n"
        f"PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "PYTHONDONTWRITEBYTECODE=1\n"
        "export PYTHONPATH PYTHONDONTWRITEBYTECODE\n"
        f'exec {PYTHON} -P -m {module} "$@"\n'
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def install(
    prefix: Path,
    gateway_version: str = DEFAULT_GATEWAY_VERSION,
    ibc_version: str = DEFAULT_IBC_VERSION,
) -> SimInstall:
    """Create (or refresh) both trees; an existing simulation.conf is kept."""
    layout = SimInstall(prefix.resolve(), gateway_version, ibc_version)
    source_root = Path(__file__).resolve().parent.parent
    ibc = layout.ibc_path
    _write(ibc / "IBC.jar", "simulated IBC.jar (ibgwd_sim)\n")
    _write(ibc / "version", ibc_version + "\n")
    _write(layout.ibcstart, _launcher("ibgwd_sim.ibcstart", source_root), 0o755)
    if not layout.sim_conf.exists():
        _write(layout.sim_conf, SIM_CONF_TEMPLATE)
    prog = layout.program_path
    _write(prog / "jars" / "jts4launch.jar", "simulated jts4launch.jar (ibgwd_sim)\n")
    _write(prog / "ibgateway.vmoptions", VMOPTIONS)
    _write(prog / ".install4j" / "i4jruntime.jar", "simulated i4jruntime.jar (ibgwd_sim)\n")
    _write(prog / "jre" / "bin" / "java", _launcher("ibgwd_sim.gateway", source_root), 0o755)
    _write(prog / ".install4j" / "inst_jre.cfg", str(prog / "jre") + "\n")
    os.chmod(prog / "jre", 0o755)
    return layout


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ibgwd_sim install")
    parser.add_argument("--prefix", required=True, type=Path)
    parser.add_argument("--gateway-version", default=DEFAULT_GATEWAY_VERSION)
    parser.add_argument("--ibc-version", default=DEFAULT_IBC_VERSION)
    args = parser.parse_args(argv)
    layout = install(args.prefix, args.gateway_version, args.ibc_version)
    sys.stdout.write(
        f"IBC path:      {layout.ibc_path}\n"
        f"TWS path:      {layout.tws_path}\n"
        f"Gateway:       {layout.gateway_version}\n"
        f"ibcstart.sh:   {layout.ibcstart}\n"
        f"Scenario file: {layout.sim_conf}\n"
    )
    return 0
