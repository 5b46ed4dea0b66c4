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
import re
import secrets
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ibgwd_sim import jtsini, simconf, state
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
    """Runtime.halt(code) with an optional error logged first.

    Code 1100 is Utils.exitWithException: the exception's message after "An exception has
    occurred:"; other codes are exitWithError(code, message): the message framed by !!! lines
    (Utils.java:93-127). ``exception`` forces the former (e.g. the entry point's 1107).
    """

    def __init__(self, code: int, message: str = "", exception: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exception = code == EXIT_UNHANDLED if exception is None else exception


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
        raise HaltError(EXIT_UNHANDLED, str(e)) from None  # IllegalArgumentException
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


class SimClock:
    """The wall clock as the simulated Gateway sees it (ClockOffsetSeconds, ClockWeekday)."""

    def __init__(self, sim: SimConfig) -> None:
        offset = timedelta(seconds=sim.clock_offset_s)
        if sim.clock_weekday is not None:
            today = (datetime.now() + offset).weekday()
            offset += timedelta(days=(sim.clock_weekday - today) % 7)
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now() + self.offset

    def seconds_until(self, at: datetime) -> float:
        return max(0.0, (at - self.now()).total_seconds())


_HH_MM_A = re.compile(r"^(0[1-9]|1[0-2]):([0-5]\d) (AM|PM)$")


def parse_hh_mm_a(text: str) -> str | None:
    """Java's LocalTime.parse(text, ofPattern("hh:mm a")): two-digit hour, upper-case AM|PM."""
    return text if _HH_MM_A.match(text) else None


def occurrence_key(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


TOKEN_MAGIC = b"ibgwd_sim autorestart token\n"


class Gateway:
    """IBC's handlers and the Gateway's own behaviour, on one asyncio loop."""

    def __init__(self, launch: Launch, console: Console, events: EventLog) -> None:
        self.launch = launch
        self.console = console
        self.events = events
        self.clock = SimClock(launch.sim)
        console.now = self.clock.now
        self.user_dir = launch.settings_path / user_dir_name(launch.user)
        self.state = state.load(self.user_dir)
        self.login_state = "LOGGED_OUT"
        self.stalled = False
        self.shutting_down = False
        self.window: GatewayWindow | None = None
        self._main_window = asyncio.Event()
        self._login_done = asyncio.Event()  # the config dialog is usable only after login
        # ConfigurationTasks run in the order they were submitted: those of
        # startTwsOrGateway (submitted at JVM start) before any RESTART's
        self._startup_config_done = asyncio.Event()
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._login_started: float | None = None
        self._twofa_exit_task: asyncio.Task[None] | None = None
        self._lock_exit_task: asyncio.Task[None] | None = None
        self._restart_override: tuple[float, datetime] | None = None  # RestartDelaySeconds
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

    @property
    def logged_in(self) -> bool:
        return self.login_state == "LOGGED_IN"

    # -- plumbing ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, HaltError):
            self.halt(error.code, error.message, error.exception)
        elif error is not None:
            self.halt(EXIT_UNHANDLED, str(error))

    def halt(self, code: int, message: str = "", exception: bool | None = None) -> None:
        if self._exit.done():
            return
        if message:
            if code == EXIT_UNHANDLED if exception is None else exception:
                self.console.exception(message)
            else:
                self.console.error(message)
        if code >= 1100:
            self.console.log(f"Exiting after error with exit code={code}")
        self._exit.set_result(code % 256)

    def show(self, text: str) -> None:
        if self.window is not None:
            self.window.show(text)

    def _dialog(self, title: str, *events: str) -> None:
        """TwsListener.logWindow: one line per window event of a dialog."""
        for event in events:
            self.console.log(f"detected dialog entitled: {title}; event={event}")

    # -- CommandTarget ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop_task(cold=False)

    def create_pause_file(self) -> None:
        (self.launch.settings_path / f"PAUSE{self.launch.session_id}").touch()

    async def wait_main_window(self) -> None:
        self.console.log("Getting main window")
        if self._main_window.is_set():
            self.console.log("Main window already found")
            return
        self.console.log("Creating main window future")
        await self._main_window.wait()
        self.console.log("Got main window from future")

    async def restart(self, verb: str) -> datetime:
        """RestartTask.restart (RestartTask.java:94-125), for the Gateway (no Restart menu)."""
        await self.wait_main_window()
        while self.clock.now().second >= 58:
            await asyncio.sleep(1)
        at = self.clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
        self.console.log(f"Setting auto-restart time to {restart_clock(at)}")
        self.events.record("restart_time_set", at=restart_clock(at), verb=verb)
        self.spawn(self._apply_restart_time(at))
        return at

    async def _apply_restart_time(self, at: datetime) -> None:
        """ConfigurationTask.executeAsync: waits for the config dialog, i.e. for login, and
        for the configuration tasks submitted before it."""
        await self._login_done.wait()
        await self._startup_config_done.wait()
        delay = self.launch.sim.restart_delay_s
        if delay is not None:  # time compression: this occurrence comes early
            self._restart_override = (asyncio.get_running_loop().time() + delay, at)
        await self._configure_lock_exit("Auto restart", restart_clock(at))

    def reconnect(self, what: str) -> bool:
        """RECONNECTDATA looks for the main window for 1 ms (CommandDispatcher.java:80-95)."""
        if what == "RECONNECTDATA":
            self.console.log("Getting main window")
            if not self._main_window.is_set():
                self.console.log("Creating main window future")
                # new KeyEvent(null, ...) throws on the dispatcher's pool thread; IBC's default
                # uncaught-exception handler exits (UncaughtExceptionHandler.java:24-26)
                self.console.exception("null source")
                self.halt(EXIT_UNHANDLED)
                return False
            self.console.log("Main window already found")
            self.api.send_farm_notices()
        return True

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.halt, EXIT_SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self.halt, 130)
        try:
            await self._start()
        except HaltError as e:
            self.halt(e.code, e.message, e.exception)
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
        self.console.raw("IBC Settings:")  # DefaultSettings.java:55-61, no prefix
        for line in s.dump():
            self.console.raw(line)
        self.console.raw("End IBC Settings\n")
        await self.commands.start()
        self._schedule_shutdown()
        display = os.environ.get("DISPLAY", "")
        if display:
            try:
                self.window = GatewayWindow(f"{launch.mode} trading · simulated")
            except XConnectionError:
                raise HaltError(  # java.awt.AWTError, uncaught: UncaughtExceptionHandler
                    EXIT_UNHANDLED,
                    "Can't connect to X11 window server using "
                    f"'{display}' as the value of the DISPLAY variable.",
                ) from None
            self.spawn(self._pump_window())
        self.console.log(f"TWS Settings directory is: {launch.settings_path}")
        restarting = bool(launch.java.properties.get("restart", ""))
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
        if not display:  # headless AWT: the Gateway's first frame throws HeadlessException,
            # IbcTws.startGateway logs it and exits 1107 (IbcTws.java:468-478)
            raise HaltError(
                EXIT_NO_ENTRYPOINT,
                "No X11 DISPLAY variable was set, but this program performed an operation "
                "which requires it.",
                exception=True,
            )
        self.spawn(self._session(restarting))

    async def _pump_window(self) -> None:
        while self.window is not None:
            self.window.pump()
            await asyncio.sleep(0.05)

    def _schedule_shutdown(self) -> None:
        """IbcTws.startShutdownTimerIfRequired (IbcTws.java:485-505)."""
        s, now = self.launch.settings, self.clock.now()
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
            self.spawn(self._stop_at(cold, cold=True))
        elif closedown is not None:
            self.console.log(f"{product} will be shut down at {closedown:%Y/%m/%d %H:%M}")
            self.spawn(self._stop_at(closedown, cold=False))

    async def _stop_at(self, at: datetime, cold: bool) -> None:
        while (delay := self.clock.seconds_until(at)) > 0:
            await asyncio.sleep(min(delay, 60))
        self._stop_task(cold=cold)

    def _stop_task(self, cold: bool) -> None:
        """StopTask (StopTask.java:40-91): COLDRESTART file if cold, then exit or File>Close."""
        if cold:
            (self.launch.settings_path / f"COLDRESTART{self.launch.session_id}").touch()
        if not self.logged_in:
            self.commands.shutdown()
            self.console.log("Login has not completed: exiting immediately")
            self.halt(0)
            return
        self.console.log("Login has completed: exiting via [File, Close] menu")
        self.spawn(self._shutdown(token=False))

    async def _session(self, restarting: bool) -> None:
        launch, sim = self.launch, self.launch.sim
        if sim.scenario is Scenario.STALL_AFTER_START:
            self.stalled = True
            self.events.record("stalled")
            return
        if sim.scenario is Scenario.NO_LOGIN_DIALOG:
            self.show("Starting (no login dialog)")
            if restarting:  # SessionManager.java:59-73: no display timer with -Drestart
                return
            await asyncio.sleep(launch.settings.get_int("LoginDialogDisplayTimeout", 60))
            raise HaltError(
                EXIT_NO_LOGIN_DIALOG, "IBC closing after TWS/Gateway failed to display login dialog"
            )
        if not restarting:
            await self._login()
            return
        token = launch.settings_path / launch.java.properties["restart"] / "autorestart"
        try:
            valid = token.read_bytes().startswith(TOKEN_MAGIC)
        except OSError:
            valid = False
        if sim.scenario is Scenario.AUTORESTART_REJECTED and valid:
            # The server refuses the token (IbcAlpha/IBC#290): the Gateway shows its "Login
            # Error" dialog and IBC cold-restarts (LoginErrorDialogHandler.java:38-46).
            token.unlink()
            self.events.record("autorestart_rejected", path=token)
            await asyncio.sleep(sim.login_s)
            self._dialog("Login Error", "Opened")
            self.console.log("Login error message:")
            self.console.raw("The session could not be resumed: please log in again.")
            self.console.log("Cold restart in progress")
            self._stop_task(cold=True)
            return
        if not valid or sim.scenario is Scenario.STALE_TOKEN:
            # The Gateway shows its login dialog; IBC was started with -Drestart and leaves it
            # alone (AbstractLoginHandler.java:56-64): nobody logs in (IBC issue 235).
            await asyncio.sleep(sim.startup_s)
            self.console.log("Login dialog WINDOW_OPENED: LoginState is LOGGED_OUT")
            self.show("Login (IBC waits: started with -Drestart)")
            self.events.record("login_not_attempted", token=token, exists=token.exists())
            return
        token.unlink()
        self.events.record("autorestart_consumed", path=token)
        self.show("Restarting session")
        await asyncio.sleep(sim.login_s)
        await self._logged_in()

    def _relogin_permitted(self) -> bool:
        """LoginManager.reloginPermitted (LoginManager.java:158-166)."""
        s = self.launch.settings
        if not s.get("ReloginAfterSecondFactorAuthenticationTimeout"):
            if s.get("ExitAfterSecondFactorAuthenticationTimeout"):
                return s.get_bool("ExitAfterSecondFactorAuthenticationTimeout", False)
            return False
        return s.get_bool("ReloginAfterSecondFactorAuthenticationTimeout", False)

    async def _login(self) -> None:
        launch, sim = self.launch, self.launch.sim
        # A real Gateway JVM needs seconds from launch to its login dialog (class loading,
        # Swing); IBC's LoginDialogDisplayTimeout (default 60 s) exists for that.
        await asyncio.sleep(sim.startup_s)
        self.console.log(f"Login dialog WINDOW_OPENED: LoginState is {self.login_state}")
        self.show("Login")
        attempt = 0
        while True:  # initiateLogin (AbstractLoginHandler.java:76-125)
            attempt += 1
            self.login_state = "AWAITING_CREDENTIALS"
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
            self.login_state = "LOGGING_IN"
            if self._login_started is None:
                self._login_started = asyncio.get_running_loop().time()
            if not self._main_window.is_set():
                self.spawn(self._main_window_opens(min(0.3, sim.login_s / 2)))
            if launch.mode == "live":
                self.console.log(
                    "Waiting for Login frame to become SecondFactorAuthenticationDialog"
                )
            self.show("Logging in…")
            await asyncio.sleep(sim.login_s)
            wrong = (sim.accept_user and launch.user != sim.accept_user) or (
                sim.accept_password and launch.password != sim.accept_password
            )
            if sim.scenario is Scenario.LOGIN_FAILED or wrong:
                self._login_failed()
                return
            if sim.scenario is Scenario.EXISTING_SESSION and not await self._existing_session():
                return
            needs_2fa = sim.two_factor_for.applies_to(launch.mode) or sim.scenario in (
                Scenario.TWOFA_PENDING,
                Scenario.TWOFA_TIMEOUT,
            )
            if needs_2fa:
                outcome = await self._second_factor()
                if outcome == "relogin":
                    continue
                if outcome == "wait":
                    return
            await self._logged_in()
            return

    def _login_failed(self) -> None:
        """LoginFailedDialogHandler (LoginFailedDialogHandler.java:40-49) + StopTask(cold)."""
        self.login_state = "LOGIN_FAILED"
        self._dialog("Login failed", "Activated", "Focused", "Opened")
        self.console.log("Login failed")
        self.console.log("Cold restart in progress")
        self.show("Login failed")
        self.events.record("login_failed")
        (self.launch.settings_path / f"COLDRESTART{self.launch.session_id}").touch()
        self._dialog("Login failed", "Lost focus", "Deactivated", "Closed")  # OK clicked
        self.commands.shutdown()
        self.console.log("Login has not completed: exiting immediately")
        self.halt(0)

    async def _existing_session(self) -> bool:
        """ExistingSessionDetectedDialogHandler.java:43-103 for a login that has not completed:
        True if the login goes on; otherwise the process exits or waits for a human."""
        action = self.launch.settings.get("ExistingSessionDetectedAction", "manual").lower()
        self._dialog("Existing session detected", "Opened")
        if action not in ("manual", "primary", "primaryoverride", "secondary"):
            self.console.log(
                f"ExistingSessionDetectedAction has an invalid value: {action}: "
                "assuming 'secondary'"
            )
            action = "secondary"
        self.events.record("existing_session", action=action)
        if action == "manual":
            self.console.log("User must choose whether to continue with this session (scenario 1)")
            self.show("Existing session detected: waiting for the user")
            return False
        if action == "secondary":
            self.console.log("End this session and let the other session proceed (scenario 2)")
            self.halt(0)
            return False
        self.console.log(
            "Don't know the type of the other session, so continue this one (scenario 3)"
        )
        return True

    async def _second_factor(self) -> str:
        """The 2FA dialog: "approved", "relogin" (same JVM) or "wait" (a human must act).

        SecondFactorAuthenticationDialogHandler.java:50-118, LoginManager.java:80-180.
        """
        launch, sim, s = self.launch, self.launch.sim, self.launch.settings
        loop = asyncio.get_running_loop()
        approve = launch.settings_path / APPROVE_FILE
        title = "Second Factor Authentication"
        self._dialog(title, "Opened")
        devices = sim.second_factor_devices
        wanted = s.get("SecondFactorDevice")
        if len(devices) > 1 and wanted not in devices:
            if not wanted:
                self.console.error(
                    "You should specify the required second factor device using the "
                    "SecondFactorDevice setting in config.ini"
                )
            else:
                self.console.error(f"could not find second factor device '{wanted}' in the list")
            self.show(f"Second factor authentication: choose a device ({', '.join(devices)})")
            self.events.record("twofa_device_select", devices=",".join(devices))
        else:
            if len(devices) > 1:  # the device is chosen, OK clicked: the prompt itself opens
                self.events.record("twofa_device_selected", device=wanted)
                self._dialog(title, "Opened")
            self.login_state = "TWO_FA_IN_PROGRESS"
            self.console.log("Second Factor Authentication initiated")
            self.show(f"Second factor authentication: approve by creating {approve}")
            self.events.record("twofa_initiated")
        # IB closes an unanswered prompt (TwoFactorDialogSeconds); twofa_pending never does
        closes_at = (
            None if sim.scenario is Scenario.TWOFA_PENDING else loop.time() + sim.twofa_dialog_s
        )
        while not approve.exists():
            if closes_at is not None and loop.time() >= closes_at:
                break
            await asyncio.sleep(POLL_S)
        approved = approve.exists()
        if approved:
            approve.unlink()
            self.events.record("twofa_approved")
        self._dialog(title, "Closed")
        started = self._login_started if self._login_started is not None else loop.time()
        self._login_started = None
        duration = int(loop.time() - started)
        self.console.log(f"Duration since login: {duration} seconds")
        relogin = self._relogin_permitted()
        if duration < s.get_int("SecondFactorAuthenticationTimeout", 180):
            if relogin:
                interval = s.get_int("SecondFactorAuthenticationExitInterval", 60)
                self.console.log(f"If login has not completed, IBC will exit in {interval} seconds")
                self._twofa_exit_task = self.spawn(self._exit_unless_logged_in(interval))
            if approved:
                return "approved"
            self.events.record("twofa_closed", duration_s=duration)
            self.show("Second factor authentication not completed: waiting for the user")
            return "wait"
        if approved:
            return "approved"
        self.events.record("twofa_closed", duration_s=duration)
        if not relogin:
            self.console.log("Re-login after second factor authentication timeout not required")
            self.show("Second factor authentication timed out: waiting for the user")
            return "wait"
        self.console.log(
            f"Re-login after second factor authentication timeout in {int(RELOGIN_DELAY_S)} second"
        )
        await asyncio.sleep(RELOGIN_DELAY_S)
        return "relogin"

    async def _main_window_opens(self, delay_s: float) -> None:
        """The Gateway's main frame ("Loading...") opens right after the login click, before
        any 2FA (real log in IbcAlpha/IBC#207): GatewayMainWindowFrameHandler.java:37-39."""
        await asyncio.sleep(delay_s)
        if not self._main_window.is_set():
            self._dialog_frame("Loading...", "Activated", "Focused", "Opened")
            self.console.log("Found Gateway main window")
            self._main_window.set()

    def _dialog_frame(self, title: str, *events: str) -> None:
        for event in events:
            self.console.log(f"detected frame entitled: {title}; event={event}")

    async def _exit_unless_logged_in(self, interval: int) -> None:
        """LoginManager.restartAfterTime (LoginManager.java:168-182)."""
        await asyncio.sleep(interval)
        if self.logged_in:
            self.console.log("Login has already completed - no need for IBC to exit")
            return
        raise HaltError(
            EXIT_2FA_TIMEOUT,
            "IBC closing because login has not completed after Second Factor Authentication",
        )

    async def _logged_in(self) -> None:
        launch, sim = self.launch, self.launch.sim
        port = launch.api_port
        self.api.read_only = self.state.read_only_api
        self.api.allow_only_localhost = self.state.allow_only_localhost
        try:
            await self.api.start(None, port)  # the real Gateway listens on every interface
        except OSError as e:  # the Gateway's own log, not IBC's
            self.events.record("api_failed", port=port, error=e.strerror)
        else:
            self.events.record("api_open", port=port)
        if not self._main_window.is_set():  # a token relaunch: no login click
            self.console.log("Found Gateway main window")
            self._main_window.set()
        self.login_state = "LOGGED_IN"
        self._login_done.set()
        self.console.log("Login has completed")
        if self._twofa_exit_task is not None:
            self._twofa_exit_task.cancel()
            self._twofa_exit_task = None
        self.events.record("login_completed")
        accounts = ",".join(sim.accounts)
        self.show(f"Logged in ({accounts}) · API on port {port}")
        self.spawn(self._configure_after_login())
        if sim.scenario is Scenario.CRASH_AFTER:
            self.spawn(self._crash_after(sim.crash_after_s))

    async def _configure_after_login(self) -> None:
        """IbcTws.startTwsOrGateway's configuration tasks (IbcTws.java:532-537, 578-607)."""
        s = self.launch.settings
        await asyncio.sleep(0.05)  # they wait for the config dialog, after login
        if self.shutting_down:
            self._startup_config_done.set()
            return
        if s.get("ReadOnlyApi"):
            wanted = s.get_bool("ReadOnlyApi", True)
            self.console.log("Setting ReadOnlyApi")
            flag = str(wanted).lower()
            if self.state.read_only_api == wanted:
                self.console.log(f"Read-Only API checkbox is already set to: {flag}")
            else:
                self.state = self.state.with_(read_only_api=wanted)
                self.api.read_only = wanted
                self.console.log(f"Read-Only API checkbox is now set to: {flag}")
        restart_at, logoff_at = s.get("AutoRestartTime"), s.get("AutoLogoffTime")
        if restart_at:
            await self._configure_lock_exit("Auto restart", restart_at)
            if logoff_at:
                self.console.log("AutoLogoffTime is ignored because AutoRestartTime is also set")
        elif logoff_at:
            await self._configure_lock_exit("Auto logoff", logoff_at)
        else:
            self._schedule_lock_exit()  # the Gateway's stored Lock and Exit setting
        self._startup_config_done.set()

    async def _configure_lock_exit(self, name: str, text: str) -> None:
        """ConfigureAutoLogoffOrRestartTimeTask.run (ConfigureAutoLogoff...Task.java:51-113)."""
        self.console.log(f"Setting {name} time")
        new = parse_hh_mm_a(text)
        if new is None:
            self.console.error(
                f"{name} time setting must be hh:mm AM or hh:mm PM, "
                'for example "09:30 AM" or "04:00 PM"'
            )
            self._schedule_lock_exit()
            return
        action = "restart" if name == "Auto restart" else "logoff"
        current, selected = self.state.lock_exit_time, self.state.lock_exit_action == action
        if new == current and selected:
            self.console.log(f"{name} time already set to {current}")
        elif selected:
            self.console.log(f"{name} time changed from {current} to {new}")
        else:
            self.console.log(f"{name} time set to {new}")
        self.state = self.state.with_(lock_exit_action=action, lock_exit_time=new)
        self._schedule_lock_exit()

    def _schedule_lock_exit(self) -> None:
        """The Gateway's own Lock and Exit timer: Auto restart or Auto log off, daily."""
        if self._lock_exit_task is not None:
            self._lock_exit_task.cancel()
        now = self.clock.now()
        at = next_clock_time(self.state.lock_exit_time, now)
        if at is None:
            return
        if occurrence_key(at) == self.state.last_restart:
            at += timedelta(days=1)  # carried out already (a relaunch within that minute)
        self._lock_exit_task = self.spawn(self._lock_exit_at(at))

    async def _lock_exit_at(self, at: datetime) -> None:
        loop = asyncio.get_running_loop()
        while True:
            override = self._restart_override
            if override is not None and occurrence_key(override[1]) == occurrence_key(at):
                delay = override[0] - loop.time()
            else:
                delay = self.clock.seconds_until(at)
            if delay <= 0:
                break
            await asyncio.sleep(min(delay, 1.0))
        if self.state.lock_exit_action == "restart":
            self.state = self.state.with_(last_restart=occurrence_key(at))
            await self._shutdown(token=True)
        else:
            self.events.record("auto_logoff")
            await self._shutdown(token=False)

    async def _shutdown(self, token: bool) -> None:
        """The Gateway closing down: the "Shutdown progress" dialog until the JVM exits.

        ShutdownProgressDialogHandler.java:35-39 shuts IBC's command server down when the
        dialog opens; the Gateway writes the autorestart token just before it exits (IBC#221).
        """
        if self.shutting_down:
            return
        self.shutting_down = True
        if self._lock_exit_task is not None and self._lock_exit_task is not asyncio.current_task():
            self._lock_exit_task.cancel()
        self._dialog("Shutdown progress", "Opened")
        self.events.record("shutdown_started", restart=token)
        self.commands.shutdown()
        self._dialog("Shutdown progress", "Activated", "Focused")
        await self.api.close()
        self.events.record("api_closed")
        self.show("Shutting down…")
        await asyncio.sleep(self.launch.sim.shutdown_s)
        state.save(self.user_dir, self.state)
        if token:
            self.user_dir.mkdir(exist_ok=True)
            path = self.user_dir / "autorestart"
            path.write_bytes(TOKEN_MAGIC + secrets.token_hex(32).encode())
            self.events.record("autorestart_written", path=path)
        self.halt(0)

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
        if e.exception:
            console.exception(e.message)
        else:
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
