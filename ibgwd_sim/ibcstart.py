"""The simulated ``ibcstart.sh``: IBC's argv, pre-flight checks, exit codes and restart loop.

It launches the simulated "java" (``ibgwd_sim.gateway``) as a child process, forwards
SIGTERM/SIGINT to it as SIGTERM, and relaunches it on the same conditions as IBC's script.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType

USAGE = """\
Usage:

ibcstart.sh twsVersion [-g | --gateway] [--tws-path=twsPath]
             [--tws-settings-path=twsSettingsPath] [--ibc-path=ibcPath]
             [--ibc-ini=ibcIni] [--java-path=javaPath]
             [--user=userid] [--pw=password]
             [--fix-user=fixuserid] [--fix-pw=fixpassword]
             [--mode=tradingMode]
             [--on2fatimeout=2fatimeoutaction]

  (simulated by ibgwd_sim: see ibgwd_sim/README.md)
"""

EXIT_USAGE = 0
EXIT_NO_JAVA = 1
EXIT_NO_VERSION = 2
EXIT_BAD_ARGUMENT = 3
EXIT_NO_PROGRAM = 4
EXIT_NO_PATH = 5
EXIT_NO_INI = 6
EXIT_NO_VMOPTIONS = 7
EXIT_LOGIN_DIALOG_NOT_SHOWN = 88
EXIT_2FA_TIMEOUT = 87
EXIT_SIGTERM = 143

_OPTIONS = (
    "tws-path",
    "tws-settings-path",
    "ibc-path",
    "ibc-ini",
    "java-path",
    "user",
    "pw",
    "fix-user",
    "fix-pw",
    "mode",
    "on2fatimeout",
)


class ArgvError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StartArgs:
    tws_version: str
    gateway: bool
    options: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str) -> str:
        return self.options.get(name, default)


def parse_argv(argv: list[str]) -> StartArgs | None:
    """IBC's case-insensitive parsing; None means "print usage and exit 0"."""
    if not argv or argv[0] == "" or argv[0].lower() in ("-?", "-h", "--help"):
        return None
    version = ""
    gateway = False
    options: dict[str, str] = {}
    for arg in argv:
        low = arg.lower()
        if low in ("-?", "-h", "--help"):
            return None
        if low in ("-g", "--gateway"):
            gateway = True
            continue
        name, eq, value = arg.partition("=")
        if low.startswith("--") and eq and name[2:].lower() in _OPTIONS:
            options[name[2:].lower()] = value
            continue
        if arg.startswith("-"):
            raise ArgvError(EXIT_BAD_ARGUMENT, f"Error: unrecognised argument: {arg}")
        if version:
            raise ArgvError(EXIT_BAD_ARGUMENT, f"Error: unrecognised argument: {arg}")
        version = arg
    return StartArgs(version, gateway, options)


@dataclass(frozen=True)
class Launch:
    """Everything the restart loop needs, resolved by the pre-flight checks."""

    gateway: bool
    settings_path: Path
    program_path: Path
    ibc_path: Path
    ibc_ini: Path
    vm_options: tuple[str, ...]
    credentials: tuple[str, ...]  # [fixUser fixPw] [user pw], deprecated but accepted
    mode: str
    restart_on_2fa_timeout: bool
    java: Path

    @property
    def trailing_args(self) -> tuple[str, ...]:
        return (*self.credentials, self.mode) if self.mode else self.credentials

    @property
    def entry_point(self) -> str:
        return "ibcalpha.ibc.IbcGateway" if self.gateway else "ibcalpha.ibc.IbcTws"

    def java_args(self, session_id: str, restart_subdir: str | None) -> list[str]:
        jars = sorted(str(p) for p in (self.program_path / "jars").glob("*.jar"))
        jars += [str(self.program_path / ".install4j" / "i4jruntime.jar")]
        jars += [str(self.ibc_path / "IBC.jar")]
        args = ["-cp", ":".join(jars), *self.vm_options]
        args += [
            "-Dtwslaunch.autoupdate.serviceImpl=com.ib.tws.twslaunch.install4j.Install4jAutoUpdateService",
            "-Dchannel=latest",
            "-Dexe4j.isInstall4j=true",
            "-Dinstall4jType=standalone",
            f"-DjtsConfigDir={self.settings_path}",
            f"-Dibcsessionid={session_id}",
        ]
        if restart_subdir:
            args.append(f"-Drestart={restart_subdir}")
        return [*args, self.entry_point, str(self.ibc_ini), *self.trailing_args]


def _find_java(args: StartArgs, program_path: Path) -> Path | None:
    java_path = args.get("java-path", "")
    if java_path:
        java = Path(java_path) / "java"
        return java if java.is_file() else None
    for cfg in ("pref_jre.cfg", "inst_jre.cfg"):
        try:
            jre = (program_path / ".install4j" / cfg).read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            continue
        if (Path(jre) / "bin" / "java").is_file():
            return Path(jre) / "bin" / "java"
    found = shutil.which("java")
    if found:
        return Path(found)
    home = os.environ.get("JAVA_HOME", "")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    return None


def preflight(args: StartArgs) -> Launch:
    """IBC's checks, in IBC's order, each with IBC's exit code."""
    if not args.tws_version:
        raise ArgvError(EXIT_NO_VERSION, "Error: TWS major version number must be supplied")
    home = Path.home()
    tws_path = Path(args.get("tws-path", str(home / "Jts")))
    settings = Path(args.get("tws-settings-path", str(tws_path)).rstrip("/") or "/")
    ibc_path = Path(args.get("ibc-path", "/opt/ibc"))
    ibc_ini = Path(args.get("ibc-ini", str(home / "ibc" / "config.ini")))
    if not settings.is_dir():
        raise ArgvError(EXIT_NO_PATH, f"Error: TWS settings path: {settings} does not exist")
    layouts = [tws_path / "ibgateway" / args.tws_version, tws_path / args.tws_version]
    if not args.gateway:
        layouts.reverse()
    program = next((p for p in layouts if (p / "jars").is_dir()), None)
    if program is None:
        product = "Gateway" if args.gateway else "TWS"
        raise ArgvError(
            EXIT_NO_PROGRAM,
            f"Error: {product} version {args.tws_version} is not installed: "
            f"can't find jars folder {layouts[0] / 'jars'}",
        )
    if not ibc_path.is_dir():
        raise ArgvError(EXIT_NO_PATH, f"Error: IBC path: {ibc_path} does not exist")
    if not ibc_ini.is_file():
        raise ArgvError(EXIT_NO_INI, f"Error: IBC configuration file: {ibc_ini} does not exist")
    vmoptions = program / ("ibgateway.vmoptions" if args.gateway else "tws.vmoptions")
    if not vmoptions.is_file():
        raise ArgvError(EXIT_NO_VMOPTIONS, f"Error: no {vmoptions.name} file found in {program}")
    java = _find_java(args, program)
    if java is None:
        raise ArgvError(EXIT_NO_JAVA, "Error: can't find suitable Java installation")
    lines = (ln.strip() for ln in vmoptions.read_text(encoding="latin-1").splitlines())
    vm = tuple(ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("-D"))
    trailing: list[str] = []
    if args.get("fix-user", "") or args.get("fix-pw", ""):
        trailing += [args.get("fix-user", ""), args.get("fix-pw", "")]
    if args.get("user", "") or args.get("pw", ""):
        trailing += [args.get("user", ""), args.get("pw", "")]
    return Launch(
        gateway=args.gateway,
        settings_path=settings,
        program_path=program,
        ibc_path=ibc_path,
        ibc_ini=ibc_ini,
        vm_options=vm,
        credentials=tuple(trailing),
        mode=args.get("mode", ""),
        restart_on_2fa_timeout=args.get("on2fatimeout", "").lower() == "restart",
        java=java,
    )


def _say(message: str = "") -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


class RestartLoop:
    """Runs the "java" child until a loop decision says stop, like IBC's script.

    ibcstart.sh l.365-413 (find_auto_restart) and l.516-578 (the loop): the ``-Drestart``
    option is only ever set by a lookup that finds exactly one token and only cleared by a
    cold restart, so a relaunch after 88 (no lookup) or after a lookup that found nothing
    (87 with --on2fatimeout=restart) reuses the previous one.
    """

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        alphabet = string.ascii_letters + string.digits
        self.session_id = "".join(secrets.choice(alphabet) for _ in range(8))
        self._child: subprocess.Popen[bytes] | None = None
        self.autorestart_option: str | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """trap 'kill -TERM $PID' TERM INT (l.523) while Java runs; bash dies otherwise."""
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            return
        raise SystemExit(EXIT_SIGTERM)

    def _run_java(self) -> int:
        java_args = self.launch.java_args(self.session_id, self.autorestart_option)
        # l.519: "$java" -cp "$classpath" $vm_options$autorestart_option $entry "$ini" *** mode
        trailing = len(self.launch.trailing_args)
        classpath, middle = java_args[1], java_args[2 : len(java_args) - trailing - 1]
        secret_count = len(self.launch.credentials)  # --user/--pw etc.: never echo them
        shown = ["***"] * secret_count + list(self.launch.trailing_args[secret_count:])
        _say(f"Starting {self._product} with this command:")
        _say(
            f'"{self.launch.java}" -cp "{classpath}" {" ".join(middle)} '
            f'"{self.launch.ibc_ini}" {" ".join(shown)}'.rstrip()
        )
        _say()
        env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
        self._child = subprocess.Popen(
            [sys.executable, "-P", "-m", "ibgwd_sim.gateway", *java_args],
            cwd=self.launch.settings_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # IBC's script discards Java's stderr
        )
        code = self._child.wait()
        self._child = None
        return (128 - code if code < 0 else code) % 256

    @property
    def _product(self) -> str:
        return "Gateway" if self.launch.gateway else "TWS"

    def find_auto_restart(self) -> bool:
        """find_auto_restart (l.365-413); True = restart_needed."""
        _say("Finding autorestart file")
        settings = self.launch.settings_path
        first: Path | None = None
        subdir: str | None = None
        for path in sorted(p for p in settings.glob("*/autorestart") if p.is_file()):
            if first is None:
                first = path
                _say(f"autorestart file found at {path}: authentication will not be required")
                subdir = path.parent.name
            else:
                subdir = None
                _say(f"WARNING: deleting extra autorestart file found at {path}")
                path.unlink(missing_ok=True)
                _say("WARNING: deleting first autorestart file found")
                first.unlink(missing_ok=True)
        if subdir is None:
            if first is not None:
                for line in MULTIPLE_TOKENS:
                    _say(line)
                _say()
                return True
            _say("autorestart file not found: full authentication will be required")
            _say()
            return False
        _say(f"AUTORESTART_OPTION is -Drestart={subdir}")
        self.autorestart_option = subdir
        return True

    def run(self) -> int:
        settings = self.launch.settings_path
        _say("Java VM Options=" + " ".join(self.launch.vm_options))  # l.363
        self.find_auto_restart()
        _say()
        while True:
            code = self._run_java()
            _say(f"IBC returned exit status {code}")
            cold_file = settings / f"COLDRESTART{self.session_id}"
            if code == EXIT_LOGIN_DIALOG_NOT_SHOWN:
                pass
            elif cold_file.exists():
                cold_file.unlink()
                self.autorestart_option = None
                _say("IBC will cold-restart shortly")
            elif self.find_auto_restart():
                pause = settings / f"PAUSE{self.session_id}"
                if pause.exists():
                    pause.unlink()
                    _say("IBC is paused")
                    break
            elif code != EXIT_2FA_TIMEOUT or not self.launch.restart_on_2fa_timeout:
                break
            _say("IBC will restart shortly")
            _say("sleep 2")  # the script echoes it (l.570) and does not sleep
        _say(f"{self._product} finished")
        _say()
        return code


MULTIPLE_TOKENS = (
    "*" * 79,
    "WARNING: More than one autorestart file was found. IBC can't determine which is",
    "         the right one, so they've all been deleted. Full authentication will",
    "         be required.",
    "",
    "         If you have two or more TWS/Gateway instances with the same setting",
    "         for TWS_SETTINGS_PATH, you should ensure that they are configured with",
    "         different autorestart times, to avoid creation of multiple autorestart",
    "         files.",
    "*" * 79,
)


def _banner(args: StartArgs, launch: Launch) -> None:
    try:
        version = (launch.ibc_path / "version").read_text().strip()
    except OSError:
        version = "unknown"
    now = datetime.now()
    _say("=" * 80)
    _say()
    _say(f"Starting IBC version {version} on {now:%Y-%m-%d} at {now:%H:%M:%S}")
    _say()
    _say(f"Operating system: {os.uname().sysname} {os.uname().release}")
    _say(f"{'Gateway' if launch.gateway else 'TWS'} version: {args.tws_version}")
    _say(f"Program path: {launch.program_path}")
    _say(f"Settings path: {launch.settings_path}")
    _say(f"IBC path: {launch.ibc_path}")
    _say(f"IBC ini file: {launch.ibc_ini}")
    _say(f"Second factor authentication timeout action: {args.get('on2fatimeout', 'exit')}")
    _say()
    _say("=" * 80)


def main(argv: list[str]) -> int:
    try:
        args = parse_argv(argv)
        if args is None:
            _say(USAGE)
            return EXIT_USAGE
        launch = preflight(args)
    except ArgvError as e:
        _say(str(e))
        return e.code
    _banner(args, launch)
    loop = RestartLoop(launch)
    signal.signal(signal.SIGTERM, loop.on_signal)
    signal.signal(signal.SIGINT, loop.on_signal)
    return loop.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
