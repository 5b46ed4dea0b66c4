"""The ibgwd daemon under real systemd: readiness, relay, faults, recovery, stop, secrets."""

from __future__ import annotations

import time

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

UNIT = "ibgwd.service"
IBC = "ibgwd-default-ibc-paper.service"
DISPLAY = "ibgwd-default-display.service"
RELAY = "ibgwd-default-relay-paper.service"
VNC = "ibgwd-default-vnc.service"
EVENTS = "/var/lib/ibgwd/default/settings/sim-events.log"
VNC_SECRET = "vnc-Secret-7f3a"  # test credential


def status_text(box: Box) -> str:
    return stack.show(box, UNIT, "StatusText")


def is_ready(box: Box) -> bool:
    return status_text(box).startswith("ready")


def main_pid(box: Box, unit: str) -> int:
    return int(stack.show(box, unit, "MainPID") or 0)


def connect_refused(box: Box, port: int) -> bool:
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(0 if s.connect_ex(('127.0.0.1', {port})) == 111 else 1)\n"
    )
    return box.run("/usr/bin/python3", "-c", code, check=False).returncode == 0


def wait_ready_and_serving(box: Box, timeout: float = 90) -> float:
    """Wait until ibgwd reports ready and a real client gets through the relay; seconds waited."""
    start = time.monotonic()
    results: list[stack.ClientResult] = []

    def serving() -> bool:
        if not is_ready(box):
            return False
        results.append(stack.ib_async_client(box, 4004, timeout=5))
        return results[-1].ok

    try:
        stack.wait_for(serving, timeout, "ready and serving clients through the relay", 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last client result: {results[-1:]}") from None
    return time.monotonic() - start


@pytest.fixture
def running(box: Box) -> Box:
    stack.install(box, stack.base_settings() | {"VNC_SERVER_PASSWORD": VNC_SECRET})
    stack.start(box)
    return box


def test_start_returns_when_api_answers_and_ib_async_completes_through_relay(running: Box) -> None:
    box = running
    assert stack.show(box, UNIT, "ActiveState") == "active"
    assert status_text(box) == "ready: API live on 4002, relay on 4004"
    for unit in (DISPLAY, IBC, RELAY, VNC):
        assert stack.show(box, unit, "ActiveState") == "active", unit
        assert stack.show(box, unit, "Slice") == "ibgwd-default.slice", unit
        assert stack.show(box, unit, "User") == "ibgateway", unit
    result = stack.ib_async_client(box, 4004)
    assert result.ok, result.output
    assert "DU" in result.output  # managedAccounts from the gateway, through the relay


def test_client_is_refused_not_dropped_while_gateway_logs_in(box: Box) -> None:
    stack.install(box, stack.base_settings(), sim={"LoginSeconds": "6"})
    box.run("systemctl", "start", "--no-block", UNIT)
    stack.wait_for(
        lambda: stack.show(box, IBC, "ActiveState") == "active", 30, "the IBC unit to run"
    )
    assert "login" in status_text(box)
    assert connect_refused(box, 4004)  # nothing listens on the relay port yet
    stack.wait_for(lambda: is_ready(box), 60, "ready")
    assert stack.ib_async_client(box, 4004).ok


@pytest.mark.parametrize("unit", [DISPLAY, IBC, RELAY, VNC])
def test_kill_9_of_a_component_is_recovered(running: Box, unit: str) -> None:
    box = running
    pid = main_pid(box, unit)
    assert pid
    box.run("kill", "-9", str(pid))
    stack.wait_for(lambda: main_pid(box, unit) not in (0, pid), 60, f"{unit} to come back")
    took = wait_ready_and_serving(box)
    print(f"recovery after kill -9 of {unit}: {took:.1f} s")
    assert box.run("pgrep", "-c", "-x", "Xvfb").stdout.strip() == "1"
    assert stack.show(box, UNIT, "NRestarts") == "0"  # ibgwd itself was not restarted


def test_kill_9_of_ibgwd_restarts_it_and_leftovers_are_cleaned(running: Box) -> None:
    box = running
    old = main_pid(box, UNIT)
    box.run("kill", "-9", str(old))
    stack.wait_for(lambda: main_pid(box, UNIT) not in (0, old), 60, "systemd to restart ibgwd")
    took = wait_ready_and_serving(box, timeout=120)
    print(f"recovery after kill -9 of ibgwd: {took:.1f} s")
    assert stack.show(box, UNIT, "NRestarts") == "1"
    assert box.run("pgrep", "-c", "-x", "Xvfb").stdout.strip() == "1"
    assert box.run("pgrep", "-c", "-x", "socat").stdout.strip() == "1"


def test_frozen_gateway_is_detected_by_the_handshake_probe_and_recovered(running: Box) -> None:
    box = running
    ibc_pid = main_pid(box, IBC)
    # Freeze every process of the gateway: the kernel still accepts TCP, nothing answers.
    for pid in box.run("pgrep", "-P", str(ibc_pid)).stdout.split():
        box.run("kill", "-STOP", pid)
    stack.wait_for(lambda: not is_ready(box), 30, "the hang to be noticed")
    took = wait_ready_and_serving(box)
    print(f"frozen gateway: ready again after {took:.1f} s")
    metrics = stack.metrics(box)
    assert 'ibgwd_recoveries_total{kind="unit_restart",mode="paper"} 1.0' in metrics
    assert stack.show(box, UNIT, "NRestarts") == "0"


def test_gateway_own_restart_does_not_trigger_recovery(running: Box) -> None:
    box = running
    # The Gateway restarts on its own (as at AutoRestartTime): IBC's command server RESTART.
    box.run(
        "/usr/bin/python3",
        "-c",
        "import socket;s=socket.create_connection(('127.0.0.1',7463),5);"
        "s.sendall(b'RESTART\\n');print(s.recv(100))",
    )
    stack.wait_for(
        lambda: "autorestart_consumed" in box.path(EVENTS).read_text(), 60, "the Gateway restart"
    )
    wait_ready_and_serving(box)
    metrics = stack.metrics(box)
    assert "ibgwd_recoveries_total" in metrics
    for line in metrics.splitlines():
        if line.startswith("ibgwd_recoveries_total{"):
            assert line.endswith(" 0.0"), line
    events = box.path(EVENTS).read_text()
    assert "event=autorestart_written" in events
    ibc_log = box.run("journalctl", "-u", IBC, "--no-pager", "-o", "cat").stdout
    assert "authentication will not be required" in ibc_log  # no new 2FA login


def test_crash_loop_stops_at_the_rate_limit(box: Box) -> None:
    settings = stack.base_settings() | {"RECOVERY_MAX_PER_HOUR": "2", "RECOVERY_BACKOFF": "600"}
    stack.install(box, settings, sim={"Scenario": "crash_after", "CrashAfterSeconds": "2"})
    stack.start(box)
    stack.wait_for(
        lambda: "rate limit" in status_text(box), 90, "the recovery rate limit", interval=0.5
    )
    assert 'ibgwd_gateway_state{mode="paper",state="rate_limited"} 1.0' in stack.metrics(box)
    assert stack.show(box, IBC, "ActiveState") in ("inactive", "")  # no more logins
    assert stack.show(box, UNIT, "ActiveState") == "active"


def test_bad_setting_exits_78_names_the_setting_and_does_not_loop(box: Box) -> None:
    stack.install(box, stack.base_settings() | {"TRADING_MODE": "bogus"})
    r = box.run("systemctl", "start", UNIT, check=False)
    assert r.returncode != 0
    assert stack.show(box, UNIT, "ExecMainStatus") == "78"
    time.sleep(1)
    assert stack.show(box, UNIT, "NRestarts") == "0"
    assert stack.show(box, UNIT, "ActiveState") == "failed"
    journal = box.run("journalctl", "-u", UNIT, "--no-pager").stdout
    assert "TRADING_MODE" in journal and "bogus" in journal


def test_secrets_appear_in_no_argv_environment_journal_or_unit_property(box: Box) -> None:
    settings = stack.base_settings() | {"VNC_SERVER_PASSWORD": VNC_SECRET}
    stack.install(box, settings)
    secrets = [stack.DEMO_PASSWORD, VNC_SECRET]
    watch = stack.SecretWatch(box, secrets)  # every process from start to READY
    stack.start(box)
    stack.wait_for(lambda: stack.show(box, VNC, "ActiveState") == "active", 30, "VNC")
    stack.assert_no_secret_leaks(box, secrets, watch)
    props = box.run(
        "busctl", "--system", "introspect", "org.ibgwd.Gateway1.default", "/org/ibgwd/Gateway1"
    ).stdout
    for secret in secrets:
        assert secret not in props
    ini = box.run("stat", "-c", "%a %U", "/run/ibgwd/default/ibc/config-paper.ini").stdout.split()
    assert ini == ["600", "ibgateway"]
    assert box.run("findmnt", "-n", "-o", "FSTYPE", "-T", "/run/ibgwd").stdout.strip() == "tmpfs"


def test_stop_sends_stop_to_ibc_and_removes_every_child(running: Box) -> None:
    box = running
    r = box.run("systemctl", "stop", UNIT, check=False, timeout=90)
    assert r.returncode == 0, r.stderr
    assert stack.show(box, UNIT, "Result") == "success"
    assert "event=command command=STOP" in box.path(EVENTS).read_text()
    left = box.run("systemctl", "list-units", "--all", "--plain", "--no-legend", "ibgwd-default-*")
    assert [line for line in left.stdout.splitlines() if ".service" in line] == []
    assert box.run("pgrep", "-x", "Xvfb", check=False).returncode == 1
