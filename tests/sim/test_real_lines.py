"""Every line the simulated IBC prints with IBC's prefix is a line IBC 3.24.1 prints.

Each template below names the IBC source that prints it; a simulator line that matches none
fails the test, so the simulation cannot drift into invented wording that ibgwd would then be
taught to parse.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from ibgwd_sim.harness import SimRun

from .conftest import Ports, StartGateway

_T = r"\d\d:\d\d [AP]M"
TEMPLATES: tuple[tuple[str, str], ...] = (
    (r"version: [\d.]+", "IbcTws.java:297"),
    (r"using default settings provider: ini file is .+", "DefaultSettings.java:138"),
    (r"TWS Settings directory is: .+", "IbcTws.java:523"),
    (
        r"Starting session: will exit if login dialog is not displayed within \d+ seconds",
        "SessionManager.java:63",
    ),
    (r"Re-starting session", "SessionManager.java:60"),
    (r"Starting Gateway", "IbcTws.java:472"),
    (r"CommandServer is starting with port \d+", "CommandServer.java:59"),
    (r"CommandServer listening on address: \S+ port: \d+", "CommandServer.java:97"),
    (r"CommandServer started and is ready to accept commands", "CommandServer.java:62"),
    (r"CommandServer: ControlFrom setting = .*", "CommandServer.java:129"),
    (r"CommandServer accepted connection from: /\S+", "CommandServer.java:138"),
    (r"CommandServer received command: .+", "CommandChannel.java:83"),
    (r"CommandServer: invalid command received: .+", "CommandDispatcher.java:67"),
    (r"Closing command channel", "CommandChannel.java:50"),
    (r"CommandServer closing", "CommandServer.java:80"),
    (r"CommandServer is shutdown", "CommandServer.java:73"),
    (
        r"detected (dialog|frame) entitled: .+; event=(Opened|Activated|Focused|Lost focus|"
        r"Deactivated|Closed)",
        "TwsListener.java:146",
    ),
    (r"Login dialog WINDOW_OPENED: LoginState is [A-Z_]+", "AbstractLoginHandler.java:34"),
    (r"Setting Trading mode = (live|paper)", "AbstractLoginHandler.java:179"),
    (r"Setting user name", "GatewayLoginFrameHandler.java:104"),
    (r"Setting password", "GatewayLoginFrameHandler.java:106"),
    (r"Login attempt: \d+", "AbstractLoginHandler.java:83"),
    (r"Click button: (Log In|Paper Log In)", "SwingUtils.java:77"),
    (
        r"Waiting for Login frame to become SecondFactorAuthenticationDialog",
        "AbstractLoginHandler.java:118",
    ),
    (r"Found Gateway main window", "DefaultMainWindowManager.java:133"),
    (r"Getting main window", "DefaultMainWindowManager.java:74"),
    (r"Main window already found", "DefaultMainWindowManager.java:77"),
    (r"Creating main window future", "DefaultMainWindowManager.java:85"),
    (r"Got main window from future", "DefaultMainWindowManager.java:99"),
    (r"Login has completed", "LoginManager.java:92"),
    (r"Login failed", "LoginFailedDialogHandler.java:41"),
    (r"Cold restart in progress", "LoginFailedDialogHandler.java:42"),
    (r"Login error message:", "LoginErrorDialogHandler.java:39"),
    (r"Login has not completed: exiting immediately", "StopTask.java:81"),
    (r"Login has completed: exiting via \[File, Close\] menu", "StopTask.java:85"),
    (r"Second Factor Authentication initiated", "LoginManager.java:85"),
    (r"Duration since login: \d+ seconds", "LoginManager.java:121"),
    (r"If login has not completed, IBC will exit in \d+ seconds", "LoginManager.java:138"),
    (r"Re-login after second factor authentication timeout not required", "LoginManager.java:144"),
    (r"Re-login after second factor authentication timeout in 5 second", "LoginManager.java:150"),
    (
        r"You should specify the required second factor device using the SecondFactorDevice "
        r"setting in config.ini",
        "SecondFactorAuthenticationDialogHandler.java:101",
    ),
    (r"RestartTask: pauseOnly = (true|false)", "RestartTask.java:51"),
    (r"RestartTask: verb = (RESTART|PAUSE)", "RestartTask.java:55"),
    (r"(RESTART|PAUSE|STOP) already in progress", "RestartTask.java:61, StopTask.java:42"),
    (rf"Setting auto-restart time to {_T}", "RestartTask.java:117"),
    (r"Setting (Auto restart|Auto logoff) time", "ConfigureAutoLogoffOrRestartTimeTask:53"),
    (
        rf"(Auto restart|Auto logoff) time (already set to|set to) {_T}",
        "ConfigureAutoLogoffOrRestartTimeTask.java:89,105",
    ),
    (
        rf"(Auto restart|Auto logoff) time changed from {_T} to {_T}",
        "ConfigureAutoLogoffOrRestartTimeTask.java:99",
    ),
    (r"Setting ReadOnlyApi", "ConfigureReadOnlyApiTask.java:36"),
    (
        r"Read-Only API checkbox is (already|now) set to: (true|false)",
        "ConfigureReadOnlyApiTask.java:48,56",
    ),
    (
        r"Gateway will be (cold restarted|shut down) at \d{4}/\d\d/\d\d \d\d:\d\d",
        "IbcTws.java:499-501",
    ),
    (
        r"User must choose whether to continue with this session \(scenario 1\)",
        "ExistingSessionDetectedDialogHandler.java:58",
    ),
    (
        r"End this session and let the other session proceed \(scenario 2\)",
        "ExistingSessionDetectedDialogHandler.java:64",
    ),
    (
        r"Don't know the type of the other session, so continue this one \(scenario 3\)",
        "ExistingSessionDetectedDialogHandler.java:105",
    ),
    (r"An exception has occurred:", "Utils.java:120"),
    (r"Exiting after error with exit code=\d+", "Utils.java:94"),
)
_COMPILED = [(re.compile(rf"^{pattern}$"), ref) for pattern, ref in TEMPLATES]
_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d\d\d IBC: (.*)$")


def _unknown(run: SimRun) -> list[str]:
    messages = [m.group(1) for line in run.lines if (m := _PREFIX.match(line))]
    return [msg for msg in messages if not any(p.match(msg) for p, _ref in _COMPILED)]


def _send(port: int, text: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(text.encode())
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_simulated_ibc_prints_only_ibcs_own_lines(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    fast = {"ShutdownSeconds": "0.3", "RestartDelaySeconds": "0.3"}
    runs = []

    run = start_gateway(
        fast, ini={"ReadOnlyApi": "no", "AutoRestartTime": "11:45 PM", "ColdRestartTime": "07:05"}
    )
    run.wait_for("Login has completed")
    _send(ports.command, "FOO\nEXIT\n")
    assert _send(ports.command, "RESTART\n").startswith("OK RESTART in progress")
    run.wait_for("Re-starting session")
    run.wait_for("Login has completed", count=2)
    assert _send(ports.command, "STOP\n").startswith("OK")
    assert run.wait(20) == 0
    runs.append(run)

    run = start_gateway({**fast, "AcceptPassword": "something else"})
    run.wait_for("IBC will cold-restart shortly")
    run.terminate()
    runs.append(run)

    run = start_gateway(
        {"Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "1.2"},
        ini={
            "SecondFactorAuthenticationTimeout": "1",
            "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
        },
        mode="live",
    )
    run.wait_for("Login attempt: 2", timeout_s=20)
    run.terminate()
    runs.append(run)

    run = start_gateway({"Scenario": "twofa_pending", "SecondFactorDevices": "A,B"})
    run.wait_for("You should specify the required second factor device")
    run.terminate()
    runs.append(run)

    run = start_gateway(ini={"IbPassword": ""})
    run.wait_for("Login dialog WINDOW_OPENED")
    _send(ports.command, "RECONNECTDATA\n")
    assert run.wait(20) == 76
    runs.append(run)

    unknown = [msg for r in runs for msg in _unknown(r)]
    assert unknown == [], "lines IBC 3.24.1 does not print:\n" + "\n".join(unknown)
