"""ibgwdctl against the fake daemon on a private bus: output, waits and exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from dbus_harness import (
    PYTHON,
    FakeDaemon,
    PrivateBus,
    as_user,
    busctl,
    fake_daemon,
    private_bus,
    public_src,
)

from ibgwd.names import MANAGER_INTERFACE, OBJECT_PATH


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    with private_bus() as started:
        yield started


@pytest.fixture
def daemon(bus: PrivateBus) -> Iterator[FakeDaemon]:
    with fake_daemon(bus) as started:
        yield started


def ctl(
    bus: PrivateBus, *argv: str, instance: str = "test", user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ibgwdctl in its own process, as a user would."""
    command = [
        PYTHON,
        "-c",
        "import sys; from ibgwd.ctl import main; sys.exit(main())",
        "--instance",
        instance,
        "--bus-address",
        bus.address,
        *argv,
    ]
    return subprocess.run(
        as_user(user, command),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PYTHONPATH": str(public_src()), "PATH": "/usr/bin:/bin"},
    )


def reloading(bus: PrivateBus, daemon: FakeDaemon) -> str:
    result = busctl(
        bus, "get-property", daemon.bus_name, OBJECT_PATH, MANAGER_INTERFACE, "Reloading"
    )
    return result.stdout.strip()


def test_status_human(bus: PrivateBus, daemon: FakeDaemon) -> None:
    result = ctl(bus, "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("● ibgwd instance test - ready")
    assert "paper: ready, API 4002 up, relay 4004" in result.stdout
    assert "ibgwd-test-vnc.service" in result.stdout


def test_status_json(bus: PrivateBus, daemon: FakeDaemon) -> None:
    result = ctl(bus, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["instance"] == "test"
    assert data["gateways"]["paper"]["api_up"] is True
    assert {c["name"] for c in data["components"]} >= {"display", "vnc", "ibc-paper"}


def test_status_works_for_anyone(bus: PrivateBus, daemon: FakeDaemon) -> None:
    assert ctl(bus, "status", user="nobody").returncode == 0


def test_reload_waits_until_the_daemon_finished(bus: PrivateBus, daemon: FakeDaemon) -> None:
    daemon.config.write_text("TRADING_MODE=paper\nVNC_PASSWORD=second-secret\n")
    result = ctl(bus, "reload")
    assert result.returncode == 0, result.stderr
    assert "restarted: vnc" in result.stdout
    # The fake keeps Reloading true for a while after its reply; ctl returned only after.
    assert reloading(bus, daemon) == "b false"


def test_reload_refused_for_bad_config_exits_78(bus: PrivateBus, daemon: FakeDaemon) -> None:
    daemon.config.write_text("TRADING_MODE=bogus\n")
    result = ctl(bus, "reload")
    assert result.returncode == 78
    assert "TRADING_MODE: invalid value 'bogus'" in result.stderr


def test_restart_and_reconnect(bus: PrivateBus, daemon: FakeDaemon) -> None:
    assert ctl(bus, "restart", "--hard", "--mode", "paper").returncode == 0
    assert ctl(bus, "reconnect", "account").returncode == 0
    assert daemon.recorded_calls() == [
        {"call": "restart", "hard": True, "mode": "paper"},
        {"call": "reconnect", "what": "account", "mode": ""},
    ]


def test_failed_call_exits_1_with_the_reason(bus: PrivateBus, daemon: FakeDaemon) -> None:
    result = ctl(bus, "reconnect", "data", "--mode", "live")
    assert result.returncode == 1
    assert "NotReady" in result.stderr and "no live gateway is running" in result.stderr


def test_access_denied_exits_77(bus: PrivateBus, daemon: FakeDaemon) -> None:
    result = ctl(bus, "restart", user="nobody")
    assert result.returncode == 77
    assert "access denied" in result.stderr
    assert daemon.recorded_calls() == []


def test_daemon_not_running_exits_69(bus: PrivateBus) -> None:
    result = ctl(bus, "status", instance="nosuch")
    assert result.returncode == 69
    assert "ibgwd instance 'nosuch' is not running" in result.stderr


def test_unreachable_bus_exits_69(bus: PrivateBus) -> None:
    result = ctl(bus, "--bus-address", f"unix:path={bus.directory}/no-such-socket", "status")
    assert result.returncode == 69
    assert "cannot connect" in result.stderr
