"""Pure per-gateway health state machine: events in, new state and actions out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from ibgwd.probes.api import ProbeResult
from ibgwd.status import State

HOUR_S = 3600.0
MAX_BACKOFF_S = 3600.0


class LogEvent(enum.Enum):
    """IBC log lines that move the state machine."""

    STARTING = "starting"  # "Starting Gateway": the JVM is up, login dialog next
    TWOFA = "twofa"  # "Second Factor Authentication initiated"
    LOGIN_COMPLETED = "login_completed"  # "Login has completed"
    RESTART_SCHEDULED = "restart_scheduled"  # RESTART accepted: the Gateway restarts shortly
    RESTARTING = "restarting"  # autorestart / "Re-starting session" / cold restart
    LOGIN_FAILED = "login_failed"  # "Login failed": IBC will loop with a cold restart


LOG_PATTERNS: tuple[tuple[str, LogEvent], ...] = (
    ("Second Factor Authentication initiated", LogEvent.TWOFA),
    ("Login has completed", LogEvent.LOGIN_COMPLETED),
    ("Re-starting session", LogEvent.RESTARTING),
    ("autorestart file found", LogEvent.RESTARTING),
    ("IBC will cold-restart shortly", LogEvent.RESTARTING),
    ("IBC will restart shortly", LogEvent.RESTARTING),
    ("Setting auto-restart time", LogEvent.RESTART_SCHEDULED),
    ("RESTART in progress", LogEvent.RESTART_SCHEDULED),
    ("Login failed", LogEvent.LOGIN_FAILED),
    ("Starting Gateway", LogEvent.STARTING),
)


def classify_log_line(line: str) -> LogEvent | None:
    for needle, event in LOG_PATTERNS:
        if needle in line:
            return event
    return None


class Action(enum.Enum):
    START_RELAY = "start_relay"
    STOP_RELAY = "stop_relay"
    SOFT_RESTART = "soft_restart"  # IBC RESTART over the command server: no new 2FA
    RESTART_IBC_UNIT = "restart_ibc_unit"  # cold: a new login
    STOP_IBC_UNIT = "stop_ibc_unit"  # rate limited: stop hammering IB's login servers
    GIVE_UP = "give_up"  # stop pinging the watchdog so systemd restarts ibgwd


# Recovery kinds as counted in metrics and D-Bus.
RECOVERY_KIND = {
    Action.SOFT_RESTART: "soft_restart",
    Action.RESTART_IBC_UNIT: "unit_restart",
    Action.GIVE_UP: "watchdog",
}
ESCALATION = (Action.SOFT_RESTART, Action.RESTART_IBC_UNIT, Action.GIVE_UP)

WAITING_STATES = {State.STARTING, State.LOGGING_IN, State.WAITING_2FA, State.RESTARTING}


@dataclass(frozen=True)
class Policy:
    failure_threshold: int
    login_timeout_s: float
    recovery_max_per_hour: int
    recovery_backoff_s: float
    relay: bool


@dataclass(frozen=True)
class Health:
    """Everything the supervisor knows about one gateway. Timestamps: monotonic (`*_at`)."""

    state: State = State.STARTING
    since: float = 0.0  # when the current state (or login wait) began
    consecutive_failures: int = 0
    step: int = 0  # next escalation step
    recovery_times: tuple[float, ...] = ()  # within the last hour, for the rate limit
    backoff_until: float = 0.0
    rate_limit_hits: int = 0
    ibc_alive: bool = False
    relay_wanted: bool = False
    ever_ready: bool = False
    detail: str = ""
    probes_total: int = 0
    probe_failures_total: int = 0
    last_probe: ProbeResult | None = None
    last_probe_at: float = 0.0
    last_success_at: float = 0.0
    ready_at: float = 0.0
    restart_window_until: float = 0.0  # a known restart: probe failures until then are expected
    recoveries: dict[str, int] = field(default_factory=dict)


def _enter(h: Health, state: State, now: float, detail: str = "") -> Health:
    if h.state is state:
        return replace(h, detail=detail or h.detail)
    return replace(h, state=state, since=now, detail=detail)


def _ready(h: Health, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    actions = [Action.START_RELAY] if policy.relay and not h.relay_wanted else []
    h = _enter(h, State.READY, now, "API answered")
    return (
        replace(
            h,
            consecutive_failures=0,
            step=0,
            ever_ready=True,
            ready_at=h.ready_at if h.ever_ready else now,
            relay_wanted=policy.relay,
        ),
        actions,
    )


def _count(h: Health, kind: str) -> dict[str, int]:
    counts = dict(h.recoveries)
    counts[kind] = counts.get(kind, 0) + 1
    return counts


def _last_hour(h: Health, now: float) -> tuple[float, ...]:
    """The recoveries that count against RECOVERY_MAX_PER_HOUR."""
    return tuple(t for t in h.recovery_times if now - t < HOUR_S)


def escalate(h: Health, now: float, policy: Policy, reason: str) -> tuple[Health, list[Action]]:
    """Take the next recovery step, unless the hourly budget is spent (then back off)."""
    recent = _last_hour(h, now)
    actions: list[Action] = [Action.STOP_RELAY] if h.relay_wanted else []
    h = replace(h, relay_wanted=False, recovery_times=recent)
    step = h.step
    if step == 0 and not h.ibc_alive:
        step = 1  # nothing to soft-restart: the IBC unit is gone
    action = ESCALATION[min(step, len(ESCALATION) - 1)]
    if action is Action.GIVE_UP and not h.ibc_alive:
        # A process that keeps dying is not helped by restarting ibgwd: retry within budget.
        action, step = Action.RESTART_IBC_UNIT, 1
    if action is not Action.GIVE_UP and len(recent) >= policy.recovery_max_per_hour:
        backoff = min(policy.recovery_backoff_s * 2**h.rate_limit_hits, MAX_BACKOFF_S)
        h = replace(h, backoff_until=now + backoff, rate_limit_hits=h.rate_limit_hits + 1)
        h = _enter(
            h,
            State.RATE_LIMITED,
            now,
            f"{reason}; recovery limit reached, retry in {backoff:.0f} s",
        )
        return h, [*actions, Action.STOP_IBC_UNIT]
    kind = RECOVERY_KIND[action]
    h = replace(
        h,
        step=step + 1,
        recovery_times=(*recent, now),
        recoveries=_count(h, kind),
        consecutive_failures=0,
    )
    if action is Action.GIVE_UP:
        return _enter(
            h, State.FAILED, now, f"{reason}; recovery failed, handing over to systemd"
        ), [
            *actions,
            action,
        ]
    return _enter(h, State.RECOVERING, now, f"{reason}; {kind.replace('_', ' ')}"), [
        *actions,
        action,
    ]


def on_probe(
    h: Health, result: ProbeResult, now: float, policy: Policy
) -> tuple[Health, list[Action]]:
    h = replace(
        h,
        probes_total=h.probes_total + 1,
        probe_failures_total=h.probe_failures_total + (0 if result.outcome.alive else 1),
        last_probe=result,
        last_probe_at=now,
        last_success_at=now if result.outcome.alive else h.last_success_at,
    )
    if h.state in (State.FAILED, State.RATE_LIMITED, State.STOPPING):
        return h, []
    if result.outcome.alive:
        if h.state is State.RESTARTING:
            h = replace(h, restart_window_until=0.0)
        return _ready(h, now, policy)
    if now < h.restart_window_until and h.state is not State.RESTARTING:
        actions = [Action.STOP_RELAY] if h.relay_wanted else []
        h = replace(h, relay_wanted=False, consecutive_failures=0)
        return _enter(h, State.RESTARTING, now, "Gateway restarting"), actions
    if h.state in (State.READY, State.DEGRADED):
        failures = h.consecutive_failures + 1
        h = replace(h, consecutive_failures=failures)
        if failures >= policy.failure_threshold:
            return escalate(h, now, policy, f"API {result.outcome.value} {failures} times")
        return _enter(h, State.DEGRADED, now, f"API {result.outcome.value}"), []
    return h, []


def on_log(h: Health, event: LogEvent, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    if h.state in (State.FAILED, State.RATE_LIMITED, State.STOPPING):
        return h, []
    if event is LogEvent.TWOFA:
        return _enter(h, State.WAITING_2FA, now, "waiting for 2FA approval"), []
    if event is LogEvent.RESTART_SCHEDULED:
        window = now + policy.login_timeout_s + 120.0  # IBC restarts within the next 2 minutes
        return replace(h, restart_window_until=window, detail="restart scheduled"), []
    if event is LogEvent.RESTARTING:
        actions = [Action.STOP_RELAY] if h.relay_wanted else []
        window = now + policy.login_timeout_s
        h = replace(h, relay_wanted=False, consecutive_failures=0, restart_window_until=window)
        return _enter(h, State.RESTARTING, now, "Gateway restarting"), actions
    if event is LogEvent.LOGIN_FAILED:
        # IBC cold-restarts on its own; each attempt spends recovery budget so that a wrong
        # password or a lockout stops at the limit instead of looping against IB's servers.
        recent = _last_hour(h, now)
        h = replace(h, recovery_times=(*recent, now), recoveries=_count(h, "login_failed"))
        if len(h.recovery_times) > policy.recovery_max_per_hour:
            return escalate(h, now, policy, "login failed repeatedly")
        return _enter(h, State.LOGGING_IN, now, "login failed, IBC retries"), []
    if event in (LogEvent.STARTING, LogEvent.LOGIN_COMPLETED) and h.state is State.STARTING:
        return _enter(h, State.LOGGING_IN, now, "waiting for login"), []
    if event is LogEvent.LOGIN_COMPLETED and h.state is State.WAITING_2FA:
        return _enter(h, State.LOGGING_IN, now, "login completed, waiting for the API"), []
    return h, []


def on_ibc_unit(h: Health, alive: bool, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    was_alive, h = h.ibc_alive, replace(h, ibc_alive=alive)
    if alive or not was_alive or h.state in (State.FAILED, State.RATE_LIMITED, State.STOPPING):
        return h, []
    return escalate(h, now, policy, "IBC/Gateway process exited")


def on_tick(h: Health, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    if h.state is State.RATE_LIMITED and now >= h.backoff_until:
        h = replace(h, step=max(h.step, 1))  # after a pause, a cold start: the session is gone
        return escalate(h, now, policy, "backoff over")
    waiting = h.state in WAITING_STATES or h.state is State.RECOVERING
    if waiting and now - h.since > policy.login_timeout_s:
        return escalate(h, now, policy, f"not ready after {policy.login_timeout_s:.0f} s")
    return h, []


def started(h: Health, now: float) -> Health:
    """The IBC unit was (re)started by us: a new login begins."""
    state = h.state if h.state is State.RECOVERING else State.LOGGING_IN
    return replace(_enter(h, state, now, "waiting for login"), ibc_alive=True, since=now)
