"""The lifecycle as IBC 3.24.1 and the real Gateway have it, one test per behaviour.

Each docstring names the IBC source (IbcAlpha/IBC at 2fee90c, resources/version 3.24.1) or the
public report the behaviour follows. Time is compressed only through simulation.conf
(ShutdownSeconds, RestartDelaySeconds, ClockOffsetSeconds, ClockWeekday); the sequence of
events, the log lines and the exit codes are IBC's.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ibgwd_sim import state
from ibgwd_sim.gateway import APPROVE_FILE, TOKEN_MAGIC, user_dir_name
from ibgwd_sim.harness import SimRun, port_open

from .conftest import Ports, StartGateway

FAST = {"ShutdownSeconds": "0.3"}


def _send(port: int, command: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _token_dir(settings_path: Path) -> Path:
    return settings_path / user_dir_name("demo")


def _place_token(settings_path: Path, content: bytes = TOKEN_MAGIC + b"x") -> Path:
    directory = _token_dir(settings_path)
    directory.mkdir(exist_ok=True)
    (directory / "autorestart").write_bytes(content)
    return directory / "autorestart"


def _near_minute_end(second: int = 55) -> tuple[str, datetime]:
    """ClockOffsetSeconds that puts the simulated clock at hh:mm:<second> now, and that time."""
    now = datetime.now()
    offset = second - now.second - now.microsecond / 1e6
    return f"{offset:.3f}", now + timedelta(seconds=offset)


def _after(run: SimRun, first: str, then: str) -> bool:
    lines = run.lines
    i = next(n for n, line in enumerate(lines) if first in line)
    return any(then in line for line in lines[i + 1 :])


# -- 4. Login: the password is checked ----------------------------------------------------------


def test_wrong_password_opens_login_failed_dialog_and_ibc_loops_cold(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """LoginFailedDialogHandler.java:40-49 ("Login failed", "Cold restart in progress",
    StopTask(cold)); TwsListener.java:145-147 logs every window event of the dialog
    (real log: IbcAlpha/IBC#216); StopTask.java:58-82 (COLDRESTART file, command server shut
    down, "Login has not completed: exiting immediately", halt(0)); ibcstart.sh:545-548 relaunches
    cold, so IBC retries the login again and again."""
    run = start_gateway({"AcceptPassword": "the right one"})
    run.wait_for("IBC will cold-restart shortly", count=3)
    first = run.lines[: next(i for i, ln in enumerate(run.lines) if "exit status 0" in ln)]
    events = [m.group(1) for ln in first if (m := re.search(r"Login failed; event=(.*)$", ln))]
    assert events == ["Activated", "Focused", "Opened", "Lost focus", "Deactivated", "Closed"]
    assert sum(ln.endswith("IBC: Login failed") for ln in first) == 1
    assert sum(ln.endswith("IBC: Cold restart in progress") for ln in first) == 1
    assert any(ln.endswith("IBC: CommandServer closing") for ln in first)
    assert first[-1].endswith("IBC: Login has not completed: exiting immediately")
    assert "Login has completed" not in run.output
    assert not list(settings_path.glob("COLDRESTART*"))  # the script removes it
    assert run.terminate() == 143


def _stamp(line: str) -> datetime:
    """IBC's log timestamp, ``yyyy-MM-dd HH:mm:ss:SSS`` (Utils.java:143-161)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S:%f")


def test_relaunched_jvm_shows_its_login_dialog_only_after_its_startup_time(
    start_gateway: StartGateway,
) -> None:
    """A real Gateway JVM needs seconds from launch to its login dialog (class loading, Swing:
    IBC waits up to LoginDialogDisplayTimeout=60 s for it, SessionManager.java:59-73), so after
    "Login failed" the cold relaunch (ibcstart.sh:545-548) types the password only seconds
    later. Measured on the simulator's own log timestamps, a lower bound (sleeps never end
    early), not a wall-clock assertion."""
    run = start_gateway({"AcceptPassword": "the right one", "StartupSeconds": "1.5"})
    run.wait_for("IBC will cold-restart shortly", count=2)
    lines = [ln for ln in run.lines if " IBC: " in ln]
    starts = [i for i, ln in enumerate(lines) if ln.endswith("IBC: Starting Gateway")]
    dialogs = [i for i, ln in enumerate(lines) if "IBC: Login dialog WINDOW_OPENED" in ln]
    assert len(starts) >= 2 and len(dialogs) >= 2, run.output[-3000:]
    for start, dialog in zip(starts[:2], dialogs[:2], strict=True):
        assert start < dialog
        assert (_stamp(lines[dialog]) - _stamp(lines[start])).total_seconds() >= 1.49


def test_right_tricky_password_logs_in(start_gateway: StartGateway) -> None:
    """The conftest logs in with harness.TRICKY_PASSWORD (Properties escapes, non-ASCII) and
    the sim compares it with AcceptPassword after DefaultSettings-style trimming."""
    run = start_gateway()
    run.wait_for("Login has completed")
    assert "Login failed" not in run.output


# -- 2. Nightly restart: shutdown phase, command server closed, token, relaunch ---------------


def test_restart_shutdown_phase_closes_command_server_and_api_then_relaunches_with_token(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """ShutdownProgressDialogHandler.java:35-39 shuts the command server down when "Shutdown
    progress" opens; the API socket is reset at once (QuantConnect Lean IB brokerage #242);
    the Gateway writes the token just before it exits (maintainer, IbcAlpha/IBC#221); then
    ibcstart.sh:541,550,377,569 and SessionManager.java:59-60 ("Re-starting session")."""
    run = start_gateway({"ShutdownSeconds": "3", "RestartDelaySeconds": "0.3"})
    run.wait_for("Login has completed")
    reply = _send(ports.command, "RESTART")
    assert re.fullmatch(r"OK RESTART in progress\nOK RESTART at \d\d:\d\d [AP]M\n", reply)
    run.wait_for(r"IBC: Setting auto-restart time to \d\d:\d\d [AP]M$")
    run.wait_for("detected dialog entitled: Shutdown progress; event=Opened")
    run.wait_for("CommandServer closing")
    i = next(n for n, ln in enumerate(run.lines) if "Shutdown progress; event=Opened" in ln)
    assert run.lines[i + 1].endswith("IBC: CommandServer closing")
    assert not port_open(ports.command)
    assert not port_open(ports.api)
    assert not list(settings_path.glob("*/autorestart"))  # written only at the very end
    assert run.proc.poll() is None and "IBC returned exit status" not in run.output
    run.wait_for("IBC returned exit status 0")
    assert _after(run, "IBC returned exit status 0", "autorestart file found at")
    run.wait_for("AUTORESTART_OPTION is -Drestart=" + user_dir_name("demo"))
    run.wait_for("Re-starting session")
    run.wait_for("Login has completed", count=2)
    assert run.output.count("Login dialog WINDOW_OPENED") == 1  # no login the second time
    assert port_open(ports.api) and port_open(ports.command)


def test_restart_command_time_becomes_the_daily_restart_time(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """RestartTask.java:104-122 sets the Gateway's Auto restart time to the next minute through
    ConfigureAutoLogoffOrRestartTimeTask; "for Gateway this auto-restart time will still be in
    force after the restart" (IBC userguide.md, RESTART command). The relaunched JVM keeps it
    (ibg.xml) and does not restart again within that minute."""
    run = start_gateway({**FAST, "RestartDelaySeconds": "0.3"})
    run.wait_for("Login has completed")
    at = _send(ports.command, "RESTART").split("OK RESTART at ")[1].strip()
    run.wait_for(f"Auto restart time changed from 11:45 PM to {at}")
    run.wait_for("Login has completed", count=2)
    saved = state.load(_token_dir(settings_path))
    assert (saved.lock_exit_action, saved.lock_exit_time) == ("restart", at)
    time.sleep(1.5)
    assert run.output.count("Shutdown progress; event=Opened") == 1


def test_auto_restart_time_login_lines_and_restart_at_that_minute(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """IbcTws.java:578-596 runs ConfigureAutoLogoffOrRestartTimeTask("Auto restart") after
    every login (ConfigureAutoLogoffOrRestartTimeTask.java:53-107: "Setting Auto restart
    time", then "changed from", "set to" or "already set to"); "Setting auto-restart time to"
    is only RestartTask's line (RestartTask.java:117). At that minute the Gateway restarts
    itself with the token, no login."""
    offset, now = _near_minute_end(50)
    at = (now.replace(second=0, microsecond=0) + timedelta(minutes=1)).strftime("%I:%M %p")
    run = start_gateway({**FAST, "ClockOffsetSeconds": offset}, ini={"AutoRestartTime": at})
    run.wait_for("IBC: Setting Auto restart time$")
    run.wait_for(f"IBC: Auto restart time changed from 11:45 PM to {at}$")
    run.wait_for("Shutdown progress; event=Opened", timeout_s=20)
    run.wait_for("Re-starting session")
    run.wait_for(f"IBC: Auto restart time already set to {at}$")
    assert "Setting auto-restart time to" not in run.output
    assert run.output.count("Login dialog WINDOW_OPENED") == 1


def test_sunday_cold_restart_time_stops_with_coldrestart_file_and_logs_in_again(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """IbcTws.java:347-380 (Sunday at ColdRestartTime) and :485-505 ("Gateway will be cold
    restarted at"); StopTask(cold) at that time: COLDRESTART file, "Login has completed:
    exiting via [File, Close] menu" (StopTask.java:58-87), exit 0; ibcstart.sh:545-548 "IBC
    will cold-restart shortly" and a full login. ClockWeekday makes the simulated clock report
    a Sunday on any weekday."""
    offset, now = _near_minute_end(50)
    sim_now = now + timedelta(days=(6 - now.weekday()) % 7)
    at = sim_now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    run = start_gateway(
        {**FAST, "ClockWeekday": "sunday", "ClockOffsetSeconds": offset},
        ini={"ColdRestartTime": at.strftime("%H:%M")},
    )
    run.wait_for(f"Gateway will be cold restarted at {at:%Y/%m/%d %H:%M}")
    run.wait_for("Login has completed")
    run.wait_for(r"Login has completed: exiting via \[File, Close\] menu", timeout_s=20)
    run.wait_for("Shutdown progress; event=Opened")
    run.wait_for("IBC returned exit status 0")
    run.wait_for("IBC will cold-restart shortly")
    run.wait_for("Login dialog WINDOW_OPENED", count=2)
    run.wait_for("Login has completed$", count=2)
    assert "autorestart file found at" not in run.output
    assert not list(settings_path.glob("COLDRESTART*"))


def test_stop_after_login_goes_through_the_shutdown_phase(
    start_gateway: StartGateway, ports: Ports
) -> None:
    """StopTask.java:75-87 (ack, channel closed, File>Close); the Gateway's shutdown shows
    "Shutdown progress", which closes the command server (ShutdownProgressDialogHandler)."""
    run = start_gateway({"ShutdownSeconds": "1"})
    run.wait_for("Login has completed")
    assert _send(ports.command, "STOP") == "OK Shutting down: STOP command\n"
    run.wait_for("Shutdown progress; event=Opened")
    assert not port_open(ports.command)
    assert run.wait(20) == 0
    run.wait_for("Gateway finished")


# -- 1. The launcher loop --------------------------------------------------------------------


def test_sigterm_is_forwarded_and_a_token_still_relaunches_java(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """ibcstart.sh:522-538: TERM is forwarded to Java (trap), then the script waits for Java
    and runs the loop as after any exit: an autorestart token found by find_auto_restart
    (:550-560) relaunches Java with -Drestart even though the script was told to stop."""
    run = start_gateway()
    run.wait_for("Login has completed")
    _place_token(settings_path)
    run.proc.send_signal(15)
    run.wait_for("IBC returned exit status 143")
    run.wait_for("IBC will restart shortly")
    run.wait_for("Re-starting session")
    run.wait_for("Login has completed", count=2)
    assert run.proc.poll() is None
    assert run.terminate() == 143  # this time no token is left: the loop ends


def test_drestart_option_is_reused_when_the_lookup_finds_no_single_token(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """ibcstart.sh:389-411: find_auto_restart only sets autorestart_option when it finds exactly
    one token and never clears it; with two tokens it deletes both and still says
    restart_needed (:379-402), so :550-560 relaunches with the OLD -Drestart. That Java finds no
    token, IBC leaves the login dialog alone (AbstractLoginHandler.java:56-64,
    SessionManager.java:57) and nobody logs in. (The same reuse follows 88, :543-544, and 87
    with --on2fatimeout=restart, :561-565.)"""
    _place_token(settings_path)
    run = start_gateway({**FAST, "RestartDelaySeconds": "0.3"})
    run.wait_for("AUTORESTART_OPTION is -Drestart=" + user_dir_name("demo"))
    run.wait_for("Login has completed")
    other = settings_path / "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    other.mkdir()
    (other / "autorestart").write_bytes(TOKEN_MAGIC + b"another instance")
    assert _send(ports.command, "RESTART").startswith("OK RESTART in progress")
    run.wait_for("WARNING: deleting extra autorestart file found at")
    run.wait_for("IBC will restart shortly")
    run.wait_for("Re-starting session", count=2)
    commands = [ln for ln in run.lines if "ibcalpha.ibc.IbcGateway" in ln]
    assert len(commands) == 2 and all(f"-Drestart={user_dir_name('demo')}" in c for c in commands)
    run.wait_for("Login dialog WINDOW_OPENED", count=1)
    time.sleep(1)
    assert run.output.count("Login attempt:") == 0
    assert run.output.count("Login has completed") == 1
    assert not list(settings_path.glob("*/autorestart"))
    assert "login_not_attempted" in "\n".join(run.events())


def test_exit_88_relaunches_without_a_lookup(start_gateway: StartGateway) -> None:
    """ibcstart.sh:543-544: exit 88 skips COLDRESTART and token checks and relaunches."""
    run = start_gateway({"Scenario": "no_login_dialog"}, ini={"LoginDialogDisplayTimeout": "1"})
    run.wait_for("IBC returned exit status 88", count=2)
    i = next(n for n, ln in enumerate(run.lines) if "exit status 88" in ln)
    assert run.lines[i + 1 : i + 3] == ["IBC will restart shortly", "sleep 2"]
    assert run.terminate() == 143


# -- 3. The command server ---------------------------------------------------------------------


def test_restart_before_the_main_window_is_acknowledged_and_nothing_else(
    start_gateway: StartGateway, ports: Ports
) -> None:
    """RestartTask.java:58-80 acks "RESTART in progress" first, then restart() blocks in
    getMainWindow() (RestartTask.java:95, DefaultMainWindowManager.java:71-109). Here nobody
    logs in (no password in config.ini), so the main window never opens: no restart time, no
    second reply. RestartTask's SwitchLock is never cleared (RestartTask.java:60-65)."""
    run = start_gateway(FAST, ini={"IbPassword": ""})
    run.wait_for("Login dialog WINDOW_OPENED")
    with socket.create_connection(("127.0.0.1", ports.command), timeout=10) as s:
        s.sendall(b"RESTART\n")
        reader = s.makefile("r")
        assert reader.readline() == "OK RESTART in progress\n"
        assert _send(ports.command, "RESTART") == "ERROR RESTART already in progress\n"
        s.settimeout(1.5)
        try:
            more = reader.readline()
        except TimeoutError:
            more = ""
    assert more == ""
    assert "Setting auto-restart time" not in run.output
    assert run.proc.poll() is None


def test_restart_during_2fa_sets_the_minute_at_once_and_applies_it_after_login(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """The Gateway's main frame opens right after the login click, before 2FA ("Found Gateway
    main window" then the 2FA dialog, real log in IbcAlpha/IBC#207), so RESTART during a 2FA
    wait computes the next minute and replies at once (RestartTask.java:100-124); the
    ConfigurationTask that sets it waits for the config dialog, i.e. for login
    (ConfigurationTask.java:32-56), and only then does the restart follow."""
    run = start_gateway({**FAST, "Scenario": "twofa_pending", "RestartDelaySeconds": "0.3"})
    run.wait_for("Second Factor Authentication initiated")
    assert _after(run, "Found Gateway main window", "Second Factor Authentication initiated")
    reply = _send(ports.command, "RESTART")
    assert re.fullmatch(r"OK RESTART in progress\nOK RESTART at \d\d:\d\d [AP]M\n", reply)
    run.wait_for(r"Setting auto-restart time to \d\d:\d\d [AP]M$")
    time.sleep(1)
    assert "Setting Auto restart time" not in run.output
    assert "Shutdown progress" not in run.output
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("Login has completed")
    run.wait_for("IBC: Setting Auto restart time$")
    run.wait_for("Re-starting session")


def test_reconnectdata_before_the_main_window_kills_the_jvm(
    start_gateway: StartGateway, ports: Ports
) -> None:
    """CommandDispatcher.java:80-92: getMainWindow(1 ms) returns null before the main window
    exists and new KeyEvent(null, ...) throws; IbcGateway.java:26-27 installs
    UncaughtExceptionHandler, which calls exitWithException(1100)
    (UncaughtExceptionHandler.java:24-26): exit 76, and ibcstart.sh:561-562 ends the loop.
    No password in config.ini: the login dialog waits, the main window never opens."""
    run = start_gateway(ini={"IbPassword": ""})
    run.wait_for("Login dialog WINDOW_OPENED")
    with socket.create_connection(("127.0.0.1", ports.command), timeout=10) as s:
        s.sendall(b"RECONNECTDATA\n")
    assert run.wait(20) == 76
    run.wait_for("An exception has occurred:")
    run.wait_for("Exiting after error with exit code=1100")
    run.wait_for("Gateway finished")


def test_reconnectdata_after_login_is_acknowledged(
    start_gateway: StartGateway, ports: Ports
) -> None:
    """CommandDispatcher.java:85-94: with the main window, the key events go out, "OK "."""
    run = start_gateway()
    run.wait_for("Login has completed")
    assert _send(ports.command, "RECONNECTDATA\nEXIT") == "OK \nOK Goodbye\n"
    assert run.proc.poll() is None


def test_pause_writes_the_flag_at_once_and_ends_the_loop(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """RestartTask.java:68-70,82-92 creates PAUSE<session id> before anything else;
    ibcstart.sh:551-556 then ends the loop ("IBC is paused") and leaves the token."""
    run = start_gateway({**FAST, "RestartDelaySeconds": "0.3"})
    run.wait_for("Login has completed")
    assert _send(ports.command, "PAUSE").startswith("OK PAUSE in progress\nOK PAUSE at ")
    assert run.wait(20) == 0
    run.wait_for("IBC is paused")
    assert len(list(settings_path.glob("*/autorestart"))) == 1


# -- 5. 2FA -------------------------------------------------------------------------------------


def test_twofa_expiry_lines_and_relogin_in_the_same_jvm(start_gateway: StartGateway) -> None:
    """LoginManager.java:80-87 ("initiated"), :105-156 (dialog closed: "Duration since login:
    N seconds"; N >= SecondFactorAuthenticationTimeout with Relogin=yes: "Re-login after second
    factor authentication timeout in 5 second" and a new login attempt in the same JVM)."""
    run = start_gateway(
        {"Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "1.2"},
        ini={
            "SecondFactorAuthenticationTimeout": "1",
            "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
        },
    )
    run.wait_for("Second Factor Authentication initiated")
    run.wait_for(r"IBC: Duration since login: 1 seconds$")
    run.wait_for("Re-login after second factor authentication timeout in 5 second")
    run.wait_for("Login attempt: 2", timeout_s=20)
    run.wait_for("Second Factor Authentication initiated", count=2)
    assert "IBC returned exit status" not in run.output


def test_twofa_closed_early_with_relogin_exits_87(start_gateway: StartGateway) -> None:
    """LoginManager.java:123-140 and :168-180: the dialog closed before the timeout, Relogin=yes:
    "If login has not completed, IBC will exit in N seconds", then exitWithError(1111) = 87;
    with --on2fatimeout=exit ibcstart.sh:563-564 ends the loop with 87."""
    run = start_gateway(
        {"Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "0.3"},
        ini={
            "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
            "SecondFactorAuthenticationExitInterval": "1",
        },
    )
    assert run.wait(30) == 87
    run.wait_for("If login has not completed, IBC will exit in 1 seconds")
    run.wait_for("IBC closing because login has not completed after Second Factor Authentication")
    run.wait_for("Exiting after error with exit code=1111")


def test_twofa_approved_with_relogin_yes_cancels_the_exit(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """LoginManager.java:91-96: LOGGED_IN cancels the exit scheduled at dialog close."""
    run = start_gateway(
        {"Scenario": "twofa_pending"},
        ini={
            "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
            "SecondFactorAuthenticationExitInterval": "1",
        },
    )
    run.wait_for("Second Factor Authentication initiated")
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("If login has not completed, IBC will exit in 1 seconds")
    run.wait_for("Login has completed")
    time.sleep(1.5)
    assert run.proc.poll() is None


def test_twofa_device_selection_without_setting_prints_no_initiated_line(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """SecondFactorAuthenticationDialogHandler.java:50-58,92-103: with several devices and no
    SecondFactorDevice, IBC logs an error and never sets TWO_FA_IN_PROGRESS, so no "Second
    Factor Authentication initiated" line; a human can still choose and approve."""
    run = start_gateway({"Scenario": "twofa_pending", "SecondFactorDevices": "IB Key,SMS"})
    run.wait_for("You should specify the required second factor device")
    time.sleep(0.5)
    assert "Second Factor Authentication initiated" not in run.output
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("Login has completed")


def test_twofa_device_selection_with_setting_initiates(start_gateway: StartGateway) -> None:
    """SecondFactorAuthenticationDialogHandler.java:105-115: the configured device is selected
    and OK clicked; the prompt opens and IBC logs "initiated"."""
    run = start_gateway(
        {"Scenario": "twofa_pending", "SecondFactorDevices": "IB Key,SMS"},
        ini={"SecondFactorDevice": "SMS"},
    )
    run.wait_for("Second Factor Authentication initiated")
    assert "You should specify" not in run.output


# -- 6. Stale token ---------------------------------------------------------------------------


def test_stale_token_skips_the_login_and_waits_forever(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """IbcAlpha/IBC#235: a leftover token makes ibcstart.sh:415 pass -Drestart, IBC leaves the
    login dialog alone (AbstractLoginHandler.java:56-64) and the Gateway, whose token the
    server does not take, sits at the login dialog until the file is deleted by hand."""
    token = _place_token(settings_path, b"left over from before the reboot")
    run = start_gateway()
    run.wait_for("autorestart file found at")
    run.wait_for("Re-starting session")
    run.wait_for("Login dialog WINDOW_OPENED: LoginState is LOGGED_OUT")
    time.sleep(1.5)
    assert "Login attempt" not in run.output and "Login has completed" not in run.output
    assert token.exists() and run.proc.poll() is None
    token.unlink()  # by hand, as in the issue; otherwise a SIGTERM relaunches Java again
    assert run.terminate() == 143


# -- 7. API -------------------------------------------------------------------------------------


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state_hex = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state_hex == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_api_listens_on_every_interface(start_gateway: StartGateway, ports: Ports) -> None:
    """The real Gateway's API socket is not bound to loopback (IbcAlpha/IBC#173)."""
    run = start_gateway()
    run.wait_for("Login has completed")
    addresses = _listening_addresses(ports.api)
    assert addresses and all(set(a) == {"0"} for a in addresses)


ORDER_CLIENT = """
import json
from ib_async import IB, Stock, MarketOrder
ib = IB()
errors = []
ib.errorEvent += lambda req, code, msg, *a: errors.append(code)
ib.connect("127.0.0.1", {port}, clientId=3, timeout=10)
ib.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder("BUY", 1))
ib.sleep(1.5)
print(json.dumps(errors))
ib.disconnect()
"""


def _order_errors(port: int) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", ORDER_CLIENT.format(port=port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    codes: list[int] = json.loads(out.stdout.strip().splitlines()[-1])
    return codes


def test_fresh_gateway_api_is_read_only_until_read_only_api_no(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """A fresh Gateway stores readOnlyApi="true" (ibg.xml in ib-controller#65): orders get
    error 321. ReadOnlyApi=no makes IBC untick the box (ConfigureReadOnlyApiTask.java:35-57,
    IbcTws.java:598-607); the Gateway keeps it in its settings after a proper shutdown, so a
    later start without the setting stays writable."""
    run = start_gateway(FAST)
    run.wait_for("Login has completed")
    assert 321 in _order_errors(ports.api)
    assert "Setting ReadOnlyApi" not in run.output
    assert _send(ports.command, "STOP").startswith("OK")
    assert run.wait(20) == 0

    run = start_gateway(FAST, ini={"ReadOnlyApi": "no"})
    run.wait_for("Read-Only API checkbox is now set to: false")
    assert 321 not in _order_errors(ports.api)
    assert _send(ports.command, "STOP").startswith("OK")
    assert run.wait(20) == 0
    assert not state.load(_token_dir(settings_path)).read_only_api

    run = start_gateway(FAST, ini={"ReadOnlyApi": "no"})
    run.wait_for("Read-Only API checkbox is already set to: false")


def test_auto_logoff_time_ends_the_jvm_with_exit_0(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """IbcTws.java:593-595 configures "Auto logoff" (ConfigureAutoLogoffOrRestartTimeTask:
    "Auto logoff time set to" when Auto restart was selected); at that time the Gateway logs
    off and exits 0 without a token, and ibcstart.sh:561-562 ends the loop with 0."""
    offset, now = _near_minute_end(50)
    at = (now.replace(second=0, microsecond=0) + timedelta(minutes=1)).strftime("%I:%M %p")
    run = start_gateway({**FAST, "ClockOffsetSeconds": offset}, ini={"AutoLogoffTime": at})
    run.wait_for(f"IBC: Auto logoff time set to {at}$")
    assert run.wait(30) == 0
    run.wait_for("Shutdown progress; event=Opened")
    run.wait_for("Gateway finished")
    assert not list(settings_path.glob("*/autorestart"))


def _non_loopback_address() -> str | None:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout
    return next((a for a in out.split() if "." in a and not a.startswith("127.")), None)


def test_api_reachable_on_other_interfaces_but_localhost_only_by_default(
    start_gateway: StartGateway, ports: Ports
) -> None:
    """The API socket answers on every interface (IbcAlpha/IBC#173); a fresh Gateway stores
    allowOnlyLocalhost="true" (ib-controller#65), so a peer that is not loopback is dropped."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    run = start_gateway()
    run.wait_for("Login has completed")
    with socket.create_connection((address, ports.api), timeout=5) as s:
        s.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178")
        s.settimeout(5)
        try:
            reply = s.recv(100)
        except ConnectionResetError:
            reply = b""
    assert reply == b""
    assert any("event=api_client_refused" in e for e in run.events())


def test_closedown_at_stops_through_the_menu_and_ends_the_loop(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    """IbcTws.java:382-428 (ClosedownAt, daily without a day) and :485-505 ("Gateway will be
    shut down at"); StopTask without cold restart: "Login has completed: exiting via [File,
    Close] menu" (StopTask.java:84-86), the shutdown phase, exit 0 and no COLDRESTART file, so
    ibcstart.sh:561-562 ends the loop."""
    offset, now = _near_minute_end(50)
    at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    run = start_gateway(
        {**FAST, "ClockOffsetSeconds": offset}, ini={"ClosedownAt": at.strftime("%H:%M")}
    )
    run.wait_for(f"Gateway will be shut down at {at:%Y/%m/%d %H:%M}")
    assert run.wait(30) == 0
    run.wait_for(r"Login has completed: exiting via \[File, Close\] menu")
    run.wait_for("Shutdown progress; event=Opened")
    run.wait_for("Gateway finished")
    assert "cold-restart" not in run.output
