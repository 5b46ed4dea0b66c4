"""Each simulation.conf scenario, observed from outside: exit code, port, log line, client."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from ibgwd_sim.gateway import APPROVE_FILE
from ibgwd_sim.harness import port_open

from .conftest import Ports, StartGateway

HELLO = b"API\0" + struct.pack(">I", 9) + b"v157..178"


def _handshake(port: int, timeout_s: float) -> bytes | None:
    """The server-version reply, or None if it did not come within timeout_s."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(HELLO)
        s.settimeout(timeout_s)
        try:
            size = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
            return s.recv(size, socket.MSG_WAITALL)
        except TimeoutError:
            return None


def test_ok_answers_the_handshake(start_gateway: StartGateway, ports: Ports) -> None:
    run = start_gateway()
    run.wait_for("Login has completed")
    reply = _handshake(ports.api, 5)
    assert reply is not None and reply.split(b"\0")[0] == b"178"


def test_twofa_pending_keeps_the_port_closed_until_approved(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    run = start_gateway({"Scenario": "twofa_pending"})
    run.wait_for("Second Factor Authentication initiated")
    assert not port_open(ports.api)
    assert "event=twofa_initiated" in "\n".join(run.events())
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("Login has completed")
    assert port_open(ports.api)
    assert not (settings_path / APPROVE_FILE).exists()


def test_two_factor_for_live_does_not_ask_in_paper(start_gateway: StartGateway) -> None:
    run = start_gateway({"TwoFactorFor": "live"})
    run.wait_for("Login has completed")
    assert "Second Factor" not in run.output


def test_two_factor_for_live_asks_in_live_mode_from_argv(
    start_gateway: StartGateway, ports: Ports
) -> None:
    run = start_gateway({"TwoFactorFor": "live"}, mode="live")
    run.wait_for("Setting Trading mode = live")
    run.wait_for("Second Factor Authentication initiated")


def test_twofa_timeout_relogins_in_the_same_jvm(start_gateway: StartGateway) -> None:
    run = start_gateway(
        {"Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "1.2"},
        ini={
            "SecondFactorAuthenticationTimeout": "1",
            "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
        },
    )
    run.wait_for("Re-login after second factor authentication timeout in 5 second")
    run.wait_for("Login attempt: 2", timeout_s=20)
    assert "IBC returned exit status" not in run.output


def test_twofa_timeout_without_relogin_waits_for_a_human(start_gateway: StartGateway) -> None:
    run = start_gateway(
        {"Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "1.2"},
        ini={"SecondFactorAuthenticationTimeout": "1"},
    )
    run.wait_for("Re-login after second factor authentication timeout not required")
    assert run.proc.poll() is None


def test_stall_after_start_ignores_commands_and_never_opens_the_port(
    start_gateway: StartGateway, ports: Ports
) -> None:
    run = start_gateway({"Scenario": "stall_after_start"})
    run.wait_for("IBC: Starting Gateway$")
    with socket.create_connection(("127.0.0.1", ports.command), timeout=5) as s:
        s.sendall(b"STOP\n")
        s.settimeout(1.0)
        try:
            answer = s.recv(100)
        except TimeoutError:
            answer = b"<no reply>"
    assert answer == b"<no reply>"
    assert "event=command_ignored command=STOP" in "\n".join(run.events())
    assert not port_open(ports.api)
    assert "Login dialog" not in run.output
    assert run.terminate() == 143


def test_api_zombie_accepts_tcp_but_never_answers(
    start_gateway: StartGateway, ports: Ports
) -> None:
    run = start_gateway({"Scenario": "api_zombie"})
    run.wait_for("Login has completed")
    assert port_open(ports.api)
    assert _handshake(ports.api, 1.0) is None


def test_api_slow_answers_the_handshake_late(start_gateway: StartGateway, ports: Ports) -> None:
    run = start_gateway({"Scenario": "api_slow", "ApiDelaySeconds": "1.5"})
    run.wait_for("Login has completed")
    assert _handshake(ports.api, 0.2) is None
    assert _handshake(ports.api, 10) is not None


def test_crash_after_exits_76(start_gateway: StartGateway, ports: Ports) -> None:
    run = start_gateway({"Scenario": "crash_after", "CrashAfterSeconds": "0.5"})
    run.wait_for("Login has completed")
    assert run.wait() == 76
    run.wait_for("Exiting after error with exit code=1100")
    assert not port_open(ports.api)


def test_existing_session_secondary_exits_0(start_gateway: StartGateway) -> None:
    run = start_gateway(
        {"Scenario": "existing_session"}, ini={"ExistingSessionDetectedAction": "secondary"}
    )
    assert run.wait() == 0
    run.wait_for("Existing session detected")
    assert "Login has completed" not in run.output


def test_existing_session_primary_takes_over(start_gateway: StartGateway) -> None:
    run = start_gateway(
        {"Scenario": "existing_session"}, ini={"ExistingSessionDetectedAction": "primary"}
    )
    run.wait_for("Login has completed")


def test_autorestart_rejected_cold_restarts_and_asks_for_second_factor_again(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    """IbcAlpha/IBC#290 (maintainer): when the server does not trust the token, IBC sees the
    error and does a full cold start with 2FA: LoginErrorDialogHandler.java:38-46 ("Login error
    message:", "Cold restart in progress", StopTask(cold)), ibcstart.sh:545-548."""
    run = start_gateway(
        {
            "Scenario": "autorestart_rejected",
            "TwoFactorFor": "paper",
            "ShutdownSeconds": "0.3",
            "RestartDelaySeconds": "0.3",
        }
    )
    run.wait_for("Second Factor Authentication initiated")
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("Login has completed")
    with socket.create_connection(("127.0.0.1", ports.command), timeout=5) as s:
        s.sendall(b"RESTART\n")
    run.wait_for("Re-starting session")
    run.wait_for("Login error message:")
    run.wait_for("IBC will cold-restart shortly")
    run.wait_for("Second Factor Authentication initiated", count=2)
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("Login has completed", count=2)


def test_invalid_trading_mode_exits_80(start_gateway: StartGateway) -> None:
    run = start_gateway(ini={"TradingMode": "demo"})
    assert run.wait() == 80
    run.wait_for("Invalid Trading mode: demo")


def test_invalid_cold_restart_time_exits_81(start_gateway: StartGateway) -> None:
    run = start_gateway(ini={"ColdRestartTime": "7pm"})
    assert run.wait() == 81


def test_cold_restart_time_is_scheduled_on_sunday(start_gateway: StartGateway) -> None:
    run = start_gateway(ini={"ColdRestartTime": "07:05"})
    line = run.wait_for("Gateway will be cold restarted at")
    from datetime import datetime

    when = datetime.strptime(line.rsplit(" at ", 1)[1], "%Y/%m/%d %H:%M")
    assert (when.weekday(), when.hour, when.minute) == (6, 7, 5)


def test_settings_are_logged_with_credentials_masked(start_gateway: StartGateway) -> None:
    run = start_gateway({"AcceptPassword": "hunter2-secret"}, ini={"IbPassword": "hunter2-secret"})
    run.wait_for("Login has completed")
    assert "    IbPassword=***" in run.lines
    assert "    IbLoginId=***" in run.lines
    assert "hunter2" not in run.output
    assert "hunter2" not in "\n".join(run.events())


def test_jts_ini_is_augmented_and_other_lines_kept(
    start_gateway: StartGateway, settings_path: Path
) -> None:
    (settings_path / "jts.ini").write_text("[Logon]\nTimeZone=Europe/Paris\n")
    run = start_gateway()
    run.wait_for("Login has completed")
    text = (settings_path / "jts.ini").read_text()
    assert "TimeZone=Europe/Paris" in text
    assert "ApiOnly=true" in text
    assert "UseSSL=true" in text


def test_bad_simulation_conf_is_reported(start_gateway: StartGateway) -> None:
    run = start_gateway({"Scenario": "nonsense"})
    assert run.wait() == 76
    run.wait_for("bad simulation.conf")
