"""IBC's command server: replies, prompt, info suppression, STOP/EXIT behaviour, access control."""

from __future__ import annotations

import socket

import pytest

from ibgwd_sim.command_server import CommandServer, CommandServerOptions
from ibgwd_sim.harness import SimRun, port_open
from ibgwd_sim.output import Console, EventLog

from .conftest import Ports, StartGateway


def _session(port: int, *lines: str, read_until_close: bool = True) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for line in lines:
            s.sendall(line.encode() + b"\n")
        if not read_until_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.fixture
def logged_in(start_gateway: StartGateway) -> SimRun:
    run = start_gateway()
    run.wait_for("Login has completed")
    return run


def test_replies_to_each_command(logged_in: SimRun, ports: Ports) -> None:
    out = _session(ports.command, "enableapi", "RECONNECTDATA", "reconnectaccount", "FOO", "exit")
    assert out == (
        "ERROR ENABLEAPI is not valid for the IB Gateway\nOK \nOK \nERROR Command invalid\n"
        "OK Goodbye\n"
    )
    logged_in.wait_for("CommandServer: invalid command received: FOO")
    logged_in.wait_for("CommandServer received command: exit")
    assert any("command=RECONNECTDATA" in e for e in logged_in.events())


def test_prompt_and_info_messages_when_configured(
    start_gateway: StartGateway, ports: Ports
) -> None:
    """CommandChannel.java:38-44 (INFO greeting, no prompt), :72-84 (a prompt per blank
    line), :107-109 (the prompt without a newline)."""
    run = start_gateway(ini={"CommandPrompt": "ibc> ", "SuppressInfoMessages": "no"})
    run.wait_for("Login has completed")
    out = _session(ports.command, "", "STOP")
    assert out == (
        "INFO IBC Command Server\nibc> INFO Closing IBC\nOK Shutting down: STOP command\n"
    )
    assert run.wait() == 0


def test_stop_after_login_closes_the_gateway_with_exit_0(logged_in: SimRun, ports: Ports) -> None:
    assert _session(ports.command, "STOP") == "OK Shutting down: STOP command\n"
    assert logged_in.wait() == 0
    assert not port_open(ports.api)
    assert any("event=command command=STOP" in e for e in logged_in.events())
    logged_in.wait_for("Gateway finished")


def test_command_server_opens_before_login_and_stop_exits_immediately(
    start_gateway: StartGateway, ports: Ports
) -> None:
    run = start_gateway({"LoginSeconds": "30"})
    run.wait_for("CommandServer started and is ready to accept commands")
    assert _session(ports.command, "STOP") == "OK Shutting down: STOP command\n"
    run.wait_for("Login has not completed: exiting immediately")
    assert run.wait() == 0


def test_command_server_off_when_port_is_0(start_gateway: StartGateway, ports: Ports) -> None:
    run = start_gateway(ini={"CommandServerPort": "0"})
    run.wait_for("CommandServer is not started because the port is not configured")
    run.wait_for("Login has completed")
    assert not port_open(ports.command)


class _Target:
    stalled = False
    logged_in = True


def test_peer_outside_loopback_and_control_from_is_denied(tmp_path: object) -> None:
    server = CommandServer(
        CommandServerOptions(port=1, control_from=("10.1.2.3", "trusted.example")),
        _Target(),  # type: ignore[arg-type]
        Console(),
        EventLog(tmp_path),  # type: ignore[arg-type]
    )
    assert server._allowed("127.0.0.1", "0.0.0.0")
    assert server._allowed("10.1.2.3", "0.0.0.0")
    assert server._allowed("192.0.2.7", "192.0.2.7")  # the server socket's own address
    assert not server._allowed("192.0.2.8", "0.0.0.0")
