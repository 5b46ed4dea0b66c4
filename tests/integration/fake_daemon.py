"""A stand-in ibgwd for D-Bus tests: the real facade (publish) over a scripted fake Controller.

Run: fake_daemon.py --instance NAME [--address ADDR] [--config FILE] [--admin-group G]
     [--calls FILE]
Without --address it uses the system bus, so it can also run as a Type=notify unit in a
systemd box (it sends READY=1 when NOTIFY_SOCKET is set). It prints "READY <bus name>" on
stdout once the name is owned, and exits cleanly on SIGTERM/SIGINT.

The config file holds KEY=VALUE lines; reload() re-reads it: TRADING_MODE must be live, paper
or both (else ConfigError naming it, and nothing changes); a changed VNC_PASSWORD restarts
only "vnc". Every controller call is appended to --calls as a JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    import ibgwd  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gi.repository import GLib

from ibgwd.dbus.auth import UnixGroupAuthorizer, bus_uid_lookup
from ibgwd.dbus.server import publish
from ibgwd.errors import ConfigError, NotReadyError, Problem
from ibgwd.names import ADMIN_GROUP
from ibgwd.status import ComponentStatus, GatewayStatus, State, Status

log = logging.getLogger("fake_daemon")

SETTLE_MS = 300  # how long the fake "restarts" and "reloads" take
PORTS = {"live": (4001, 4003), "paper": (4002, 4004)}


def read_config(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {"TRADING_MODE": "paper"}
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def modes_of(trading_mode: str) -> list[str]:
    return ["live", "paper"] if trading_mode == "both" else [trading_mode]


class FakeController:
    """Implements ibgwd.status.Controller with canned behaviour, on the GLib loop."""

    def __init__(self, instance: str, config: Path | None, calls: Path | None) -> None:
        self._config_path = config
        self._calls = calls
        self._config = read_config(config)
        self._subscribers: list[Callable[[Status], None]] = []
        now = time.time()
        modes = modes_of(self._config.get("TRADING_MODE", "paper"))
        self._status = Status(
            instance=instance,
            version="0.1.0-fake",
            trading_mode=self._config.get("TRADING_MODE", "paper"),
            state=State.READY,
            ready=True,
            status_text="ready: " + ", ".join(f"{m} API up" for m in modes),
            started_timestamp=now - 60,
            ready_timestamp=now - 30,
            gateways=tuple(self._gateway(m, now) for m in modes),
            components=tuple(self._component(instance, c) for c in self._component_names(modes)),
            gateway_version="10.30",
            ibc_version="3.20.0",
        )

    @staticmethod
    def _component_names(modes: list[str]) -> list[str]:
        return ["display", "vnc"] + [f"ibc-{m}" for m in modes] + [f"relay-{m}" for m in modes]

    @staticmethod
    def _gateway(mode: str, now: float) -> GatewayStatus:
        api, relay = PORTS[mode]
        return GatewayStatus(
            mode=mode,
            state=State.READY,
            api_port=api,
            relay_port=relay,
            api_up=True,
            last_probe_timestamp=now - 2,
            last_probe_latency_s=0.012,
            last_success_timestamp=now - 2,
            probes_total=10,
            probe_failures_total=0,
            consecutive_failures=0,
            recoveries={"soft_restart": 0},
            ready_timestamp=now - 30,
        )

    @staticmethod
    def _component(instance: str, name: str) -> ComponentStatus:
        return ComponentStatus(
            name=name,
            unit=f"ibgwd-{instance}-{name}.service",
            active_state="active",
            sub_state="running",
            restarts=0,
            main_pid=1000 + len(name),
        )

    # --- Controller ---

    def status(self) -> Status:
        return self._status

    def subscribe(self, callback: Callable[[Status], None]) -> None:
        self._subscribers.append(callback)

    def reload(self) -> list[str]:
        self._record("reload")
        new = read_config(self._config_path)
        trading_mode = new.get("TRADING_MODE", "paper")
        if trading_mode not in {"live", "paper", "both"}:
            raise ConfigError([Problem("TRADING_MODE", trading_mode, "live, paper or both")])
        restarted = ["vnc"] if new.get("VNC_PASSWORD") != self._config.get("VNC_PASSWORD") else []
        self._config = new
        components = tuple(
            dataclasses.replace(c, restarts=c.restarts + 1, main_pid=c.main_pid + 1)
            if c.name in restarted
            else c
            for c in self._status.components
        )
        self._publish(dataclasses.replace(self._status, reloading=True, components=components))
        GLib.timeout_add(SETTLE_MS, self._settle, {"reloading": False})
        return restarted

    def restart(self, hard: bool, mode: str) -> str:
        self._record("restart", hard=hard, mode=mode)
        self._require(mode)
        self._publish(dataclasses.replace(self._status, state=State.RESTARTING, ready=False))
        GLib.timeout_add(SETTLE_MS, self._settle, {"state": State.READY, "ready": True})
        return f"{mode or 'all'}: {'hard' if hard else 'soft'} restart started"

    def reconnect(self, what: str, mode: str) -> None:
        self._record("reconnect", what=what, mode=mode)
        self._require(mode)

    # --- helpers ---

    def _require(self, mode: str) -> None:
        running = {g.mode for g in self._status.gateways}
        if mode and mode not in running:
            raise NotReadyError(f"no {mode} gateway is running (running: {sorted(running)})")

    def _settle(self, changes: dict[str, object]) -> bool:
        self._publish(dataclasses.replace(self._status, **changes))  # type: ignore[arg-type]
        return False

    def _publish(self, status: Status) -> None:
        self._status = status
        for callback in self._subscribers:
            callback(status)

    def _record(self, call: str, **args: object) -> None:
        if self._calls is not None:
            with self._calls.open("a") as f:
                f.write(json.dumps({"call": call, **args}) + "\n")


def _notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="default")
    parser.add_argument("--address", help="bus address (default: the system bus)")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--calls", type=Path)
    parser.add_argument("--admin-group", default=ADMIN_GROUP)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    from dasbus.connection import AddressedMessageBus, SystemMessageBus

    bus = AddressedMessageBus(args.address) if args.address else SystemMessageBus()
    controller = FakeController(args.instance, args.config, args.calls)
    authorizer = UnixGroupAuthorizer(bus_uid_lookup(bus), group=args.admin_group)
    publication = publish(bus, controller, authorizer, args.instance)

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, lambda *_: loop.quit() or False)
    print(f"READY {publication.bus_name}", flush=True)
    _notify("READY=1")
    loop.run()
    publication.close()
    bus.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
