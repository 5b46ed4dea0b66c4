"""The ibcstart restart loop: autorestart without 2FA, PAUSE, COLDRESTART, 88, 87, SIGTERM."""

from __future__ import annotations

import socket
from pathlib import Path

from ibgwd_sim.gateway import APPROVE_FILE
from ibgwd_sim.harness import SimRun, port_open

from .conftest import Ports, StartGateway


def _command(port: int, command: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _login_with_2fa(run: SimRun, settings_path: Path) -> None:
    run.wait_for("Second Factor Authentication initiated")
    (settings_path / APPROVE_FILE).touch()
    run.wait_for("Login has completed")


def _sim_processes(settings_path: Path) -> list[int]:
    """Simulated "java" processes still running for this settings path."""
    marker = f"-DjtsConfigDir={settings_path}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_restart_command_comes_back_without_second_factor(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    run = start_gateway({"TwoFactorFor": "paper", "RestartDelaySeconds": "0.5"})
    _login_with_2fa(run, settings_path)
    reply = _command(ports.command, "RESTART")
    assert reply.startswith("OK RESTART in progress\nOK RESTART at ")
    run.wait_for("autorestart file found at .*: authentication will not be required")
    run.wait_for("Re-starting session")
    run.wait_for("Login has completed", count=2)
    assert run.output.count("Second Factor Authentication initiated") == 1
    assert port_open(ports.api)
    events = "\n".join(run.events())
    assert "event=autorestart_written" in events
    assert "event=autorestart_consumed" in events
    assert not list(settings_path.glob("*/autorestart"))  # single use
    assert run.terminate() == 143


def test_pause_ends_the_loop_and_the_next_start_resumes_without_second_factor(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    run = start_gateway({"TwoFactorFor": "paper", "RestartDelaySeconds": "0.3"})
    _login_with_2fa(run, settings_path)
    assert _command(ports.command, "PAUSE").startswith("OK PAUSE in progress\nOK PAUSE at ")
    assert run.wait() == 0
    run.wait_for("IBC is paused")
    assert len(list(settings_path.glob("*/autorestart"))) == 1
    resumed = start_gateway({"TwoFactorFor": "paper"})
    resumed.wait_for("Re-starting session")
    resumed.wait_for("Login has completed")
    assert "Second Factor Authentication initiated" not in resumed.output
    assert resumed.terminate() == 143


def test_wrong_password_loops_through_cold_restart(start_gateway: StartGateway) -> None:
    run = start_gateway({"AcceptUser": "demo", "AcceptPassword": "right"})
    run.wait_for("IBC will cold-restart shortly", count=2)
    assert "Login has completed" not in run.output
    assert "autorestart file found" not in run.output
    assert run.terminate() == 143


def test_right_password_logs_in(start_gateway: StartGateway) -> None:
    run = start_gateway(
        {"AcceptUser": "demo", "AcceptPassword": "p\\w"}, ini={"IbPassword": "p\\w"}
    )
    run.wait_for("Login has completed")
    assert "Login failed" not in run.output


def test_exit_88_always_restarts(start_gateway: StartGateway) -> None:
    run = start_gateway({"Scenario": "no_login_dialog"}, ini={"LoginDialogDisplayTimeout": "1"})
    run.wait_for("IBC returned exit status 88", count=2)
    run.wait_for("IBC closing after TWS/Gateway failed to display login dialog")
    assert run.terminate() == 143


_TWOFA_EXPIRES = {"Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "0.3"}
_RELOGIN = {
    "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
    "SecondFactorAuthenticationExitInterval": "1",
}


def test_exit_87_restarts_with_on2fatimeout_restart(start_gateway: StartGateway) -> None:
    run = start_gateway(_TWOFA_EXPIRES, ini=_RELOGIN, on2fatimeout="restart")
    run.wait_for("If login has not completed, IBC will exit in 1 seconds")
    run.wait_for("IBC returned exit status 87")
    run.wait_for("Second Factor Authentication initiated", count=2)
    assert run.terminate() == 143


def test_exit_87_ends_the_loop_with_on2fatimeout_exit(start_gateway: StartGateway) -> None:
    run = start_gateway(_TWOFA_EXPIRES, ini=_RELOGIN, on2fatimeout="exit")
    assert run.wait(30) == 87


def test_sigterm_exits_143_and_takes_the_java_child_along(
    start_gateway: StartGateway, ports: Ports, settings_path: Path
) -> None:
    run = start_gateway()
    run.wait_for("Login has completed")
    assert _sim_processes(settings_path)
    assert run.terminate() == 143
    assert run.stderr == ""
    assert _sim_processes(settings_path) == []
    assert not port_open(ports.api)
    assert "event=exit code=143" in run.events()[-1]
