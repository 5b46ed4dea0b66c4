"""Sample Status snapshots and a recording fake Controller for the D-Bus unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ibgwd.status import ComponentStatus, GatewayStatus, State, Status

STARTED = 1_700_000_000.0


def sample_status(**changes: object) -> Status:
    paper = GatewayStatus(
        mode="paper",
        state=State.READY,
        api_port=4002,
        relay_port=4004,
        api_up=True,
        last_probe_timestamp=STARTED + 100,
        last_probe_latency_s=0.015,
        last_success_timestamp=STARTED + 100,
        probes_total=5,
        probe_failures_total=0,
        consecutive_failures=0,
        recoveries={"soft_restart": 2, "hard_restart": 0},
        ready_timestamp=STARTED + 42,
    )
    components = (
        ComponentStatus("display", "ibgwd-default-display.service", "active", "running", 0, 10),
        ComponentStatus("vnc", "ibgwd-default-vnc.service", "active", "running", 3, 11),
        ComponentStatus("ibc-paper", "ibgwd-default-ibc-paper.service", "active", "running", 1, 12),
    )
    base = Status(
        instance="default",
        version="0.1.0",
        trading_mode="paper",
        state=State.READY,
        ready=True,
        status_text="paper: API up on 4002",
        started_timestamp=STARTED,
        ready_timestamp=STARTED + 42,
        gateways=(paper,),
        components=components,
        gateway_version="10.30",
        ibc_version="3.20.0",
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class RecordingController:
    """A Controller that records every call and raises `error` if set."""

    current: Status = field(default_factory=sample_status)
    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    subscribers: list[Callable[[Status], None]] = field(default_factory=list)
    error: Exception | None = None
    restarted: list[str] = field(default_factory=lambda: ["vnc"])

    def status(self) -> Status:
        return self.current

    def subscribe(self, callback: Callable[[Status], None]) -> None:
        self.subscribers.append(callback)

    def _call(self, name: str, *args: object) -> None:
        self.calls.append((name, args))
        if self.error is not None:
            raise self.error

    def reload(self) -> list[str]:
        self._call("reload")
        return list(self.restarted)

    def restart(self, hard: bool, mode: str) -> str:
        self._call("restart", hard, mode)
        return f"{mode or 'all'}: {'hard' if hard else 'soft'} restart"

    def reconnect(self, what: str, mode: str) -> None:
        self._call("reconnect", what, mode)

    def publish(self, status: Status) -> None:
        self.current = status
        for callback in self.subscribers:
            callback(status)


class FixedAuthorizer:
    """Allows or denies everybody; remembers who asked for what."""

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.asked: list[tuple[str, str]] = []

    def is_authorized(self, sender: str, action: str) -> bool:
        self.asked.append((sender, action))
        return self.allow
