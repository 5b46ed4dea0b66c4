"""The one immutable status snapshot that sd_notify, metrics and D-Bus all read."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class State(enum.Enum):
    """Supervisor state of one gateway, and of the instance as a whole (its worst gateway)."""

    STARTING = "starting"  # rendering, starting display and units
    LOGGING_IN = "logging_in"  # IBC typing credentials, API port not yet answering
    WAITING_2FA = "waiting_2fa"  # second factor pending (from IBC's log)
    SELECT_2FA_DEVICE = "select_2fa_device"  # the 2FA dialog asks which device to use
    EXPIRED_2FA = "expired_2fa"  # the 2FA prompt expired: no approval possible any more
    LOGIN_FAILED = "login_failed"  # IB refused the credentials: no login until an admin acts
    READY = "ready"  # API answered the full check
    RESTARTING = "restarting"  # a known restart window: AutoRestartTime, cold restart, soft RESTART
    DEGRADED = "degraded"  # probes failing, below the failure threshold
    RECOVERING = "recovering"  # an escalation step is in progress
    RATE_LIMITED = "rate_limited"  # recovery budget exhausted; waiting for backoff
    FAILED = "failed"  # gave up: watchdog pings withheld
    STOPPING = "stopping"


STATE_SEVERITY = {
    State.READY: 0,
    State.RESTARTING: 1,
    State.STARTING: 2,
    State.LOGGING_IN: 2,
    State.WAITING_2FA: 3,
    State.SELECT_2FA_DEVICE: 3,
    State.EXPIRED_2FA: 3,
    State.DEGRADED: 4,
    State.RECOVERING: 5,
    State.RATE_LIMITED: 6,
    State.LOGIN_FAILED: 6,
    State.FAILED: 7,
    State.STOPPING: 8,
}


@dataclass(frozen=True)
class ComponentStatus:
    """A child unit as last observed."""

    name: str  # display, vnc, ibc-live, relay-paper, tunnel-live ...
    unit: str
    active_state: str  # systemd ActiveState
    sub_state: str
    restarts: int  # NRestarts plus restarts ibgwd ordered
    main_pid: int

    @property
    def up(self) -> bool:
        return self.active_state == "active"


@dataclass(frozen=True)
class GatewayStatus:
    """Health of one gateway (live or paper)."""

    mode: str
    state: State
    api_port: int
    relay_port: int
    api_up: bool
    last_probe_timestamp: float  # Unix seconds, 0 = never
    last_probe_latency_s: float
    last_success_timestamp: float
    probes_total: int
    probe_failures_total: int
    consecutive_failures: int
    recoveries: Mapping[str, int] = field(default_factory=dict)  # kind -> count
    ready_timestamp: float = 0.0
    login_wait_s: float = 0.0  # seconds spent in LOGGING_IN / WAITING_2FA on the current login
    detail: str = ""
    # Lifecycle (Unix seconds, 0 = none/unknown)
    twofa_deadline_timestamp: float = 0.0  # when the pending 2FA prompt expires
    next_restart_timestamp: float = 0.0  # the Gateway's next daily (or RESTART-set) restart
    next_cold_restart_timestamp: float = 0.0  # the next weekly full login (2FA)
    soft_restart_timestamp: float = 0.0  # a soft restart IBC accepted, due then
    restart_reason: str = ""  # while restarting: daily restart, cold restart, soft restart ...
    read_only_api: bool | None = None  # READ_ONLY_API as rendered; None = Gateway's own setting
    login_failures: int = 0  # "Login failed" dialogs seen (one dialog = one failure)
    login_failed_reason: str = ""  # set while logins are halted after a failed login


@dataclass(frozen=True)
class Status:
    instance: str
    version: str
    trading_mode: str
    state: State
    ready: bool
    status_text: str
    started_timestamp: float
    ready_timestamp: float  # first READY of this run, 0 = not yet
    gateways: tuple[GatewayStatus, ...] = ()
    components: tuple[ComponentStatus, ...] = ()
    reloads_total: int = 0
    reload_failures_total: int = 0
    gateway_version: str = ""
    ibc_version: str = ""
    gateway_pids: Mapping[str, int] = field(default_factory=dict)  # mode -> JVM pid
    reloading: bool = False  # True from RELOADING=1 until the reload finished (READY=1 again)

    @property
    def time_to_ready_s(self) -> float:
        if not self.ready_timestamp:
            return 0.0
        return self.ready_timestamp - self.started_timestamp


class Controller(Protocol):
    """What the D-Bus facade and the CLI may ask of the supervisor. Called on the main loop."""

    def status(self) -> Status: ...

    def subscribe(self, callback: Callable[[Status], None]) -> None:
        """Call back (on the loop) with each new snapshot."""

    def reload(self) -> list[str]:
        """Re-read settings; raise ConfigError and touch nothing if invalid.

        Returns the names of the components that were restarted.
        """

    def restart(self, hard: bool, mode: str) -> str:
        """Soft restart through IBC (no 2FA), or hard (restart the IBC unit). mode "" = all.

        Returns what happens and when (a soft restart takes effect at the next minute)."""

    def reconnect(self, what: str, mode: str) -> None:
        """what = "data" or "account"; sends RECONNECTDATA / RECONNECTACCOUNT."""
