"""Test data: a realistic Status of a two-gateway instance, and a mutable holder the way the
supervisor publishes snapshots (one reference, swapped whole)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import proctree

from ibgwd.status import ComponentStatus, GatewayStatus, State, Status


def realistic_status(serial: int = 1, *, api_up: bool = True, restarts: int = 0) -> Status:
    """Both modes ready, every component up; the JVM pids point at this process."""
    now = time.time()

    def gw(mode: str, port: int) -> GatewayStatus:
        return GatewayStatus(
            mode=mode,
            state=State.READY if api_up else State.DEGRADED,
            api_port=port,
            relay_port=port + 2,
            api_up=api_up,
            last_probe_timestamp=now,
            last_probe_latency_s=0.00042,
            last_success_timestamp=now if api_up else now - 60,
            probes_total=serial,
            probe_failures_total=0 if api_up else serial,
            consecutive_failures=0 if api_up else 3,
            recoveries={"soft_restart": 1},
            ready_timestamp=now - 100,
            login_wait_s=18.0,
        )

    def unit(name: str, n: int = 0) -> ComponentStatus:
        return ComponentStatus(name, f"ibgwd-default-{name}.service", "active", "running", n, 1)

    return Status(
        instance="default",
        version="0.1.0",
        trading_mode="both",
        state=State.READY if api_up else State.DEGRADED,
        ready=api_up,
        status_text="ready: API live on 4001, 4002",
        started_timestamp=now - 130,
        ready_timestamp=now - 100,
        gateways=(gw("live", 4001), gw("paper", 4002)),
        components=(
            unit("display"),
            unit("vnc"),
            unit("ibc-live", restarts),
            unit("ibc-paper"),
            unit("relay-live"),
            unit("relay-paper"),
        ),
        reloads_total=serial,
        reload_failures_total=0,
        gateway_version="10.30",
        ibc_version="3.20.0",
        gateway_pids={"live": proctree.launcher(), "paper": proctree.launcher()},
    )


@dataclass
class StatusHolder:
    """What the supervisor does: publish a new immutable snapshot by swapping one reference."""

    current: Status

    def get(self) -> Status:
        return self.current

    def publish(self, **changes: object) -> None:
        self.current = replace(self.current, **changes)  # type: ignore[arg-type]
