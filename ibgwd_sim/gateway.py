"""The simulated "java" process: IBC + IB Gateway behaviour behind the IBC command line.

Invoked by ``ibgwd_sim.ibcstart`` (and the fake JRE's ``bin/java``) with Java's argv:
``[-cp CP] [-Dk=v ...] ibcalpha.ibc.IbcGateway <ini> [fixUser fixPw] [user pw] [mode]``.
One asyncio loop runs the command server, the login state machine, the TWS API server and
the Tk window; the exit code is what ``Runtime.halt`` would give, modulo 256.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ibgwd_sim import jtsini, simconf
from ibgwd_sim.command_server import CommandServer, CommandServerOptions, restart_clock
from ibgwd_sim.output import Console, EventLog
from ibgwd_sim.properties import parse_properties
from ibgwd_sim.settings import (
    IbcSettings,
    SettingError,
    next_clock_time,
    next_closedown,
    next_cold_restart,
    trading_mode,
)
from ibgwd_sim.simconf import Scenario, SimConfig, SimConfigError
from ibgwd_sim.tws_api import ApiOptions, TwsApiServer
from ibgwd_sim.window import GatewayWindow, XConnectionError

APPROVE_FILE = "sim-approve-2fa"
EXIT_UNHANDLED = 1100
EXIT_WRONG_ARGS = 1102
EXIT_NO_INI = 1103
EXIT_BAD_TRADING_MODE = 1104
EXIT_BAD_SETTING = 1105
EXIT_NO_ENTRYPOINT = 1107
EXIT_2FA_TIMEOUT = 1111
EXIT_NO_LOGIN_DIALOG = 1112
EXIT_SIGTERM = 143
RELOGIN_DELAY_S = 5.0
POLL_S = 0.1


@dataclass(frozen=True)
class JavaArgs:
    properties: dict[str, str]
    classpath: tuple[str, ...]
    entry_point: str
    args: tuple[str, ...]


def parse_java_argv(argv: list[str]) -> JavaArgs:
    props: dict[str, str] = {}
    classpath: tuple[str, ...] = ()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg in ("-cp", "-classpath", "--class-path") and i + 1 < len(argv):
            classpath = tuple(argv[i + 1].split(":"))
            i += 1
        elif arg.startswith("-D"):
            key, _, value = arg[2:].partition("=")
            props[key] = value
        i += 1
    entry = argv[i] if i < len(argv) else ""
    return JavaArgs(props, classpath, entry, tuple(argv[i + 1 :]))


def user_dir_name(user: str) -> str:
    """A stable 40-letter directory name, shaped like the Gateway's per-user settings dir."""
    digest = hashlib.sha1(user.encode("utf-8")).hexdigest()
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


class HaltError(Exception):
    """Runtime.halt(code) with an optional error logged first."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Launch:
    """What the command line and the ini say, resolved once at startup."""

    java: JavaArgs
    settings_path: Path
    ibc_path: Path
    ini: Path
    settings: IbcSettings
    sim: SimConfig
    mode: str
    user: str
    password: str = field(repr=False)

    @property
    def gateway(self) -> bool:
        return not self.java.entry_point.endswith("IbcTws")

    @property
    def session_id(self) -> str:
        return self.java.properties.get("ibcsessionid", "")

    @property
    def api_port(self) -> int:
        override = self.settings.get_int("OverrideTwsApiPort", 0)
        if override:
            return override
        if self.gateway:
            return 4001 if self.mode == "live" else 4002
        return 7496 if self.mode == "live" else 7497


def resolve(java: JavaArgs, console: Console) -> Launch:
    """Read the ini and simulation.conf; raise HaltError like IBC's startup checks."""
    if len(java.args) > 6:
        raise HaltError(EXIT_WRONG_ARGS, "Incorrect number of arguments passed. quitting...")
    settings_path = Path(java.properties.get("jtsConfigDir") or os.getcwd())
    ibc_jar = next((Path(p) for p in java.classpath if p.endswith("IBC.jar")), None)
    ibc_path = ibc_jar.parent if ibc_jar else Path("/opt/ibc")
    ini = Path(java.args[0]) if java.args else Path.home() / "ibc" / "config.ini"
    try:
        data = ini.read_bytes()
    except OSError:
        raise HaltError(EXIT_NO_INI, f"ini file {ini} does not exist") from None
    try:
        settings = IbcSettings(parse_properties(data))
    except ValueError as e:
        raise HaltError(EXIT_UNHANDLED, f"java.lang.IllegalArgumentException: {e}") from None
    console.log(f"using default settings provider: ini file is {ini}")
    try:
        sim = simconf.load_sim_conf(ibc_path)
    except SimConfigError as e:
        raise HaltError(EXIT_UNHANDLED, f"ibgwd_sim: bad {simconf.FILE_NAME}: {e}") from None
    rest = list(java.args[1:])
    mode_arg = rest.pop() if len(rest) in (1, 3, 5) else ""
    user, password = (rest[-2], rest[-1]) if len(rest) >= 2 else ("", "")
    user = user or settings.get("IbLoginId")
    password = password or settings.get("IbPassword")
    try:
        mode = trading_mode(mode_arg or settings.get("TradingMode", "live"))
    except SettingError as e:
        raise HaltError(EXIT_BAD_TRADING_MODE, str(e)) from None
    return Launch(java, settings_path, ibc_path, ini, settings, sim, mode, user, password)


class Gateway:
    """The login state machine and everything that hangs off it."""

    def __init__(self, launch: Launch, console: Console, events: EventLog) -> None:
        self.launch = launch
        self.console = console
        self.events = events
        self.logged_in = False
        self.stalled = False
        self.window: GatewayWindow | None = None
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        options = ApiOptions(
            accounts=launch.sim.accounts,
            handshake_delay_s=launch.sim.api_delay_s
            if launch.sim.scenario is Scenario.API_SLOW
            else 0.0,
            zombie=launch.sim.scenario is Scenario.API_ZOMBIE,
        )
        self.api = TwsApiServer(options, events)
        s = launch.settings
        self.commands = CommandServer(
            CommandServerOptions(
                port=s.get_int("CommandServerPort", 0),
                bind_address=s.get("BindAddress"),
                control_from=tuple(s.get("ControlFrom").split(",")),
                prompt=launch.settings.values.get("CommandPrompt", ""),
                suppress_info=s.get_bool("SuppressInfoMessages", True),
            ),
            self,
            console,
            events,
        )

    # -- plumbing ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, HaltError):
            self.halt(error.code, error.message)
        elif error is not None:
            self.halt(EXIT_UNHANDLED, f"{type(error).__name__}: {error}")

    def halt(self, code: int, message: str = "") -> None:
        if self._exit.done():
            return
        if message:
            self.console.error(message)
        if code >= 1100:
            self.console.log(f"Exiting after error with exit code={code}")
        self._exit.set_result(code % 256)

    def show(self, state: str) -> None:
        if self.window is not None:
            self.window.show(state)

    # -- CommandTarget ----------------------------------------------------------------------

    def stop(self) -> None:
        if not self.logged_in:
            self.console.log("Login has not completed: exiting immediately")
            self.halt(0)
            return
        self.show("Closing")
        self.spawn(self._close_after(0.2, code=0))

    def restart(self, pause: bool) -> datetime:
        at = datetime.now() + timedelta(seconds=self.launch.sim.restart_delay_s)
        if pause:
            (self.launch.settings_path / f"PAUSE{self.launch.session_id}").touch()
        self.console.log(f"Setting auto-restart time to {restart_clock(at)}")
        self.spawn(self._auto_restart(self.launch.sim.restart_delay_s))
        return at

    def reconnect(self, what: str) -> None:
        if what == "RECONNECTDATA" and self.logged_in:
            self.api.send_farm_notices()

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.halt, EXIT_SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self.halt, 130)
        try:
            await self._start()
        except HaltError as e:
            self.halt(e.code, e.message)
        code = await self._exit
        for task in list(self._tasks):
            task.cancel()
        await self.api.close()
        await self.commands.close()
        if self.window is not None:
            self.window.close()
        self.events.record("exit", code=code)
        return code

    async def _start(self) -> None:
        launch, s = self.launch, self.launch.settings
        self.console.log("IBC Settings:")
        for line in s.dump():
            self.console.raw(line)
        await self.commands.start()
        self._schedule_shutdown()
        display = os.environ.get("DISPLAY", "")
        if display:
            try:
                self.window = GatewayWindow(f"{launch.mode} trading · simulated")
            except XConnectionError:
                raise HaltError(
                    EXIT_UNHANDLED,
                    "java.awt.AWTError: Can't connect to X11 window server using "
                    f"'{display}' as the value of the DISPLAY variable.",
                ) from None
            self.spawn(self._pump_window())
        self.console.log(f"TWS Settings directory is: {launch.settings_path}")
        restarting = "restart" in launch.java.properties
        if restarting:
            self.console.log("Re-starting session")
        else:
            timeout = s.get_int("LoginDialogDisplayTimeout", 60)
            self.console.log(
                "Starting session: will exit if login dialog is not displayed within "
                f"{timeout} seconds"
            )
        jtsini.ensure(launch.settings_path / "jts.ini")
        self.console.log("Starting Gateway" if launch.gateway else "Starting TWS")
        self.events.record("starting", mode=launch.mode, scenario=launch.sim.scenario.value)
        if not display:  # headless AWT: the Gateway's first frame throws HeadlessException
            raise HaltError(
                EXIT_NO_ENTRYPOINT,
                "Exception occurred at Gateway entry point: ibgateway.GWClient.main",
            )
        self.spawn(self._session(restarting))

    async def _pump_window(self) -> None:
        while self.window is not None:
            self.window.pump()
            await asyncio.sleep(0.05)

    def _schedule_shutdown(self) -> None:
        s, now = self.launch.settings, datetime.now()
        try:
            closedown = next_closedown(s.get("ClosedownAt"), now) if s.get("ClosedownAt") else None
            cold = (
                next_cold_restart(s.get("ColdRestartTime"), now)
                if s.get("ColdRestartTime")
                else None
            )
        except SettingError as e:
            raise HaltError(EXIT_BAD_SETTING, str(e)) from None
        product = "Gateway" if self.launch.gateway else "TWS"
        if cold is not None and (closedown is None or cold < closedown):
            self.console.log(f"{product} will be cold restarted at {cold:%Y/%m/%d %H:%M}")
            self.spawn(self._cold_restart_at(cold))
        elif closedown is not None:
            self.console.log(f"{product} will be shut down at {closedown:%Y/%m/%d %H:%M}")
            self.spawn(self._close_after((closedown - now).total_seconds(), code=0))

    async def _session(self, restarting: bool) -> None:
        launch, sim = self.launch, self.launch.sim
        if sim.scenario is Scenario.STALL_AFTER_START:
            self.stalled = True
            self.events.record("stalled")
            return
        if sim.scenario is Scenario.NO_LOGIN_DIALOG:
            self.show("Starting (no login dialog)")
            await asyncio.sleep(launch.settings.get_int("LoginDialogDisplayTimeout", 60))
            raise HaltError(
                EXIT_NO_LOGIN_DIALOG, "IBC closing after TWS/Gateway failed to display login dialog"
            )
        token = launch.settings_path / launch.java.properties.get("restart", "-") / "autorestart"
        if restarting and token.is_file():
            token.unlink()
            self.events.record("autorestart_consumed", path=token)
            if sim.scenario is not Scenario.AUTORESTART_REJECTED:
                self.show("Restarting session")
                await asyncio.sleep(sim.login_s)
                await self._logged_in()
                return
            self.console.log("Auto-restart token rejected by server: full authentication required")
        await self._login(force_2fa=restarting and sim.scenario is Scenario.AUTORESTART_REJECTED)

    async def _login(self, force_2fa: bool) -> None:
        launch, sim, s = self.launch, self.launch.sim, self.launch.settings
        attempt = 0
        while True:
            attempt += 1
            await asyncio.sleep(0.2)
            self.console.log("Login dialog WINDOW_OPENED: LoginState is LOGGED_OUT")
            self.show("Login")
            self.console.log(f"Setting Trading mode = {launch.mode}")
            if not launch.user or not launch.password:
                self.show("Login: waiting for the user name and password to be entered")
                self.events.record("login_manual")
                return
            self.console.log("Setting user name")
            self.console.log("Setting password")
            self.console.log(f"Login attempt: {attempt}")
            self.console.log(
                f"Click button: {'Paper Log In' if launch.mode == 'paper' else 'Log In'}"
            )
            self.show("Logging in…")
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(sim.login_s)
            wrong = (sim.accept_user and launch.user != sim.accept_user) or (
                sim.accept_password and launch.password != sim.accept_password
            )
            if sim.scenario is Scenario.LOGIN_FAILED or wrong:
                self._login_failed()
                return
            if sim.scenario is Scenario.EXISTING_SESSION and not await self._existing_session():
                return
            needs_2fa = (
                force_2fa
                or sim.two_factor_for.applies_to(launch.mode)
                or sim.scenario in (Scenario.TWOFA_PENDING, Scenario.TWOFA_TIMEOUT)
            )
            if needs_2fa and not await self._second_factor(started):
                if s.get_bool(
                    "ReloginAfterSecondFactorAuthenticationTimeout",
                    s.get_bool("ExitAfterSecondFactorAuthenticationTimeout", False),
                ):
                    continue
                return
            await self._logged_in()
            return

    def _login_failed(self) -> None:
        self.console.log("detected dialog entitled: Login failed; event=Opened")
        self.console.log("Login failed")
        self.show("Login failed")
        self.events.record("login_failed")
        self.console.log("Cold restart in progress")
        (self.launch.settings_path / f"COLDRESTART{self.launch.session_id}").touch()
        self.halt(0)

    async def _existing_session(self) -> bool:
        """True if the login goes on; otherwise the process exits or waits for a human."""
        action = self.launch.settings.get("ExistingSessionDetectedAction", "manual").lower()
        self.console.log("detected dialog entitled: Existing session detected; event=Opened")
        self.events.record("existing_session", action=action)
        if action in ("primary", "primaryoverride"):
            self.console.log("End the other session and continue this one (scenario 1)")
            return True
        if action == "secondary":
            self.console.log("End this session and let the other session proceed (scenario 2)")
            self.halt(0)
            return False
        self.console.log("User must decide how to handle the existing session (scenario 5)")
        self.show("Existing session detected: waiting for the user")
        return False

    async def _second_factor(self, started: float) -> bool:
        """Wait for approval; False when the prompt closed unapproved and no exit followed."""
        launch, sim, s = self.launch, self.launch.sim, self.launch.settings
        loop = asyncio.get_running_loop()
        approve = launch.settings_path / APPROVE_FILE
        self.console.log("Second Factor Authentication initiated")
        self.show(f"Second factor authentication: approve by creating {approve}")
        self.events.record("twofa_initiated")
        closes_at = (
            loop.time() + sim.twofa_dialog_s if sim.scenario is Scenario.TWOFA_TIMEOUT else None
        )
        while not approve.exists():
            if closes_at is not None and loop.time() >= closes_at:
                break
            await asyncio.sleep(POLL_S)
        duration = int(loop.time() - started)
        self.console.log(f"Duration since login: {duration} seconds")
        if approve.exists():
            approve.unlink()
            self.events.record("twofa_approved")
            return True
        self.events.record("twofa_closed", duration_s=duration)
        relogin = s.get_bool(
            "ReloginAfterSecondFactorAuthenticationTimeout",
            s.get_bool("ExitAfterSecondFactorAuthenticationTimeout", False),
        )
        if duration >= s.get_int("SecondFactorAuthenticationTimeout", 180):
            if relogin:
                self.console.log(
                    "Re-login after second factor authentication timeout in "
                    f"{int(RELOGIN_DELAY_S)} second"
                )
                await asyncio.sleep(RELOGIN_DELAY_S)
            else:
                self.console.log("Re-login after second factor authentication timeout not required")
                self.show("Second factor authentication timed out: waiting for the user")
            return False
        if relogin:
            interval = s.get_int("SecondFactorAuthenticationExitInterval", 60)
            self.console.log(f"If login has not completed, IBC will exit in {interval} seconds")
            await asyncio.sleep(interval)
            raise HaltError(EXIT_2FA_TIMEOUT, "Second factor authentication timed out")
        self.show("Second factor authentication not completed: waiting for the user")
        await asyncio.Event().wait()  # the dialog is gone; a human must act
        return False

    async def _logged_in(self) -> None:
        launch, sim, s = self.launch, self.launch.sim, self.launch.settings
        self.logged_in = True
        self.console.log("Login has completed")
        self.events.record("login_completed")
        port = launch.api_port
        try:
            await self.api.start("127.0.0.1", port)
        except OSError as e:
            self.console.log(f"API server failed to listen on port {port}: {e.strerror}")
            self.events.record("api_failed", port=port)
        else:
            self.events.record("api_open", port=port)
        accounts = ",".join(sim.accounts)
        self.show(f"Logged in ({accounts}) · API on 127.0.0.1:{port}")
        now = datetime.now()
        restart_at = s.get("AutoRestartTime")
        logoff_at = s.get("AutoLogoffTime")
        if restart_at:
            at = next_clock_time(restart_at, now)
            if at is None:
                self.console.log(f"Invalid AutoRestartTime setting: '{restart_at}'")
            else:
                self.console.log(f"Setting auto-restart time to {restart_clock(at)}")
                self.spawn(self._auto_restart((at - now).total_seconds()))
            if logoff_at:
                self.console.log("AutoLogoffTime is ignored because AutoRestartTime is also set")
        elif logoff_at:
            at = next_clock_time(logoff_at, now)
            if at is not None:
                self.console.log(f"Setting auto-logoff time to {restart_clock(at)}")
                self.spawn(self._close_after((at - now).total_seconds(), code=0))
        if sim.scenario is Scenario.CRASH_AFTER:
            self.spawn(self._crash_after(sim.crash_after_s))

    async def _auto_restart(self, delay_s: float) -> None:
        """The Gateway's own restart: close the API, write the autorestart token, exit 0."""
        await asyncio.sleep(delay_s)
        await self.api.close()
        self.events.record("api_closed")
        user_dir = self.launch.settings_path / user_dir_name(self.launch.user)
        user_dir.mkdir(exist_ok=True)
        (user_dir / "autorestart").write_bytes(secrets.token_bytes(64))
        self.events.record("autorestart_written", path=user_dir / "autorestart")
        self.halt(0)

    async def _cold_restart_at(self, at: datetime) -> None:
        await asyncio.sleep((at - datetime.now()).total_seconds())
        self.console.log("Cold restart in progress")
        (self.launch.settings_path / f"COLDRESTART{self.launch.session_id}").touch()
        await self._close_after(0, code=0)

    async def _close_after(self, delay_s: float, code: int) -> None:
        await asyncio.sleep(delay_s)
        await self.api.close()
        self.halt(code)

    async def _crash_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        raise HaltError(EXIT_UNHANDLED, "java.lang.RuntimeException: simulated crash (crash_after)")


async def _main(argv: list[str]) -> int:
    console = Console()
    java = parse_java_argv(argv)
    try:
        version = (
            next((Path(p) for p in java.classpath if p.endswith("IBC.jar")), Path("/opt/ibc/x"))
            .with_name("version")
            .read_text()
            .strip()
        )
    except OSError:
        version = "unknown"
    console.log(f"version: {version}")
    try:
        launch = resolve(java, console)
    except HaltError as e:
        console.error(e.message)
        console.log(f"Exiting after error with exit code={e.code}")
        return e.code % 256
    gateway = Gateway(launch, console, EventLog(launch.settings_path))
    return await gateway.run()


def main(argv: list[str]) -> int:
    if "-XshowSettings:properties" in argv:
        sys.stderr.write("Property settings:\n    java.runtime.version = 17.0.11+9\n")
        return 0
    return asyncio.run(_main(argv))


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
