"""Fixtures for the simulated gateway: an install tree, a private Xvfb, and a runner factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ibgwd_sim import harness
from ibgwd_sim.install import SimInstall, install


@pytest.fixture(scope="session")
def xvfb() -> Iterator[harness.Xvfb]:
    server = harness.Xvfb()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sim(tmp_path: Path) -> SimInstall:
    return install(tmp_path / "sim")


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    path = tmp_path / "settings"
    path.mkdir()
    return path


class Ports:
    def __init__(self) -> None:
        self.api = harness.free_port()
        self.command = harness.free_port()


@pytest.fixture
def ports() -> Ports:
    return Ports()


StartGateway = Callable[..., harness.SimRun]


@pytest.fixture
def start_gateway(
    sim: SimInstall, settings_path: Path, tmp_path: Path, xvfb: harness.Xvfb, ports: Ports
) -> Iterator[StartGateway]:
    """Start ibcstart.sh with a paper-mode ini on private ports; everything is cleaned up."""
    runs: list[harness.SimRun] = []

    def start(
        scenario: dict[str, str] | None = None,
        ini: dict[str, str] | None = None,
        display: str | None = "xvfb",
        **kwargs: object,
    ) -> harness.SimRun:
        harness.write_sim_conf(
            sim,
            {
                "StartupSeconds": "0.2",
                "LoginSeconds": "0.2",
                "ShutdownSeconds": "0.3",
                "AcceptUser": "demo",
                "AcceptPassword": harness.TRICKY_PASSWORD,
                **(scenario or {}),
            },
        )
        values = {
            "IbLoginId": "demo",
            "IbPassword": harness.TRICKY_PASSWORD,
            "TradingMode": "paper",
            "OverrideTwsApiPort": str(ports.api),
            "CommandServerPort": str(ports.command),
            "BindAddress": "127.0.0.1",
            **(ini or {}),
        }
        ini_path = harness.write_ini(tmp_path / "config.ini", values)
        run = harness.start(
            sim,
            settings_path,
            ini_path,
            display=xvfb.display if display == "xvfb" else display,
            **kwargs,  # type: ignore[arg-type]
        )
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()
