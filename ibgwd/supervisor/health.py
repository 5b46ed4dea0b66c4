"""Pure per-gateway health state machine: events in, new state and actions out.

Events: TWS API probe results, classified lines of the IBC unit's journal (`ibclog`), the IBC
unit's liveness and a clock tick. The Gateway's own lifecycle is not a failure: its nightly
token restart, a restart set by RESTART, the Sunday cold restart and a logoff all show as
IBC's "Shutdown progress" dialog and the launcher's lines, and move the gateway to
RESTARTING; while IBC's launcher relaunches the JVM nothing is signalled and no recovery is
counted. Recovery escalates only for real failures: IBC soft RESTART (only once logged in;
IBC ignores it before) → restart the IBC unit (a new login) → hand over to systemd.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace

from ibgwd.probes.api import ProbeResult
from ibgwd.status import State
from ibgwd.supervisor.ibclog import IbcEvent, IbcLine

HOUR_S = 3600.0
MAX_BACKOFF_S = 3600.0


class Action(enum.Enum):
    START_RELAY = "start_relay"
    STOP_RELAY = "stop_relay"
    SOFT_RESTART = "soft_restart"  # IBC RESTART over the command server: no new 2FA
    CLEAR_TOKEN = "clear_token"  # remove a stale autorestart token before a cold start
    RESTART_IBC_UNIT = "restart_ibc_unit"  # cold: a new login
    STOP_IBC_UNIT = "stop_ibc_unit"  # rate limited: stop hammering IB's login servers
    HALT_LOGINS = "halt_logins"  # a failed login: end IBC's cold-restart loop, gracefully
    GIVE_UP = "give_up"  # stop pinging the watchdog so systemd restarts ibgwd
    SAVE_BUDGET = "save_budget"  # the recovery budget changed: persist it


# Recovery kinds as counted in metrics and D-Bus.
RECOVERY_KIND = {
    Action.SOFT_RESTART: "soft_restart",
    Action.RESTART_IBC_UNIT: "unit_restart",
    Action.GIVE_UP: "watchdog",
}
ESCALATION = (Action.SOFT_RESTART, Action.RESTART_IBC_UNIT, Action.GIVE_UP)

LOGIN_STATES = {
    State.STARTING,
    State.LOGGING_IN,
    State.WAITING_2FA,
    State.SELECT_2FA_DEVICE,
    State.EXPIRED_2FA,
}
WAITING_STATES = LOGIN_STATES | {State.RESTARTING, State.RECOVERING}
HALTED = (State.FAILED, State.RATE_LIMITED, State.STOPPING, State.LOGIN_FAILED)

DAILY = "daily restart"
COLD = "cold restart"
SOFT = "soft restart"
LOGOFF = "daily logoff"  # AUTO_LOGOFF_TIME: the Gateway exits without a token; a new login follows


@dataclass(frozen=True)
class Policy:
    failure_threshold: int
    login_timeout_s: float
    recovery_max_per_hour: int
    recovery_backoff_s: float
    relay: bool
    mode: str = "paper"
    twofa_timeout_s: float = 180.0  # IBC SecondFactorAuthenticationTimeout (LoginManager:113)
    twofa_restart: bool = False  # --on2fatimeout=restart: the launcher relaunches on exit 87
    credentials: str = "TWS_USERID / TWS_PASSWORD"  # the settings a failed login points to
    # A failing API is confirmed only after it failed this long: the "Shutdown progress" line
    # of a planned restart reaches us through the journal a moment after the API closes.
    settle_s: float = 2.0
    # A failure this close to a scheduled restart (before or after) is that restart.
    planned_window_s: float = 120.0


@dataclass(frozen=True)
class Health:
    """Everything the supervisor knows about one gateway. Timestamps: monotonic (`*_at`)."""

    state: State = State.STARTING
    since: float = 0.0  # when the current state (or login wait) began
    consecutive_failures: int = 0
    first_failure_at: float = 0.0
    step: int = 0  # next escalation step
    recovery_times: tuple[float, ...] = ()  # within the last hour, for the rate limit
    backoff_until: float = 0.0
    rate_limit_hits: int = 0
    ibc_alive: bool = False
    relay_wanted: bool = False
    ever_ready: bool = False
    logged_in: bool = False  # "Login has completed" seen in this JVM (or the API answered)
    detail: str = ""
    probes_total: int = 0
    probe_failures_total: int = 0
    last_probe: ProbeResult | None = None
    last_probe_at: float = 0.0
    last_success_at: float = 0.0
    ready_at: float = 0.0
    recoveries: dict[str, int] = field(default_factory=dict)
    # lifecycle
    restart_reason: str = ""  # while RESTARTING: what kind of restart
    pending_reason: str = ""  # a restart announced for later (soft restart accepted)
    soft_restart_at: float = 0.0  # monotonic time IBC said the soft restart happens
    planned: tuple[tuple[float, str], ...] = ()  # (monotonic time, reason) from the schedule
    twofa_deadline: float = 0.0
    login_failures: int = 0
    login_failed_at: float = 0.0


def _enter(h: Health, state: State, now: float, detail: str = "") -> Health:
    if h.state is state:
        return replace(h, detail=detail or h.detail)
    return replace(h, state=state, since=now, detail=detail)


def _stop_relay(h: Health) -> tuple[Health, list[Action]]:
    actions = [Action.STOP_RELAY] if h.relay_wanted else []
    return replace(h, relay_wanted=False), actions


def _ready(h: Health, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    actions = [Action.START_RELAY] if policy.relay and not h.relay_wanted else []
    h = _enter(h, State.READY, now, "API answered")
    return (
        replace(
            h,
            consecutive_failures=0,
            first_failure_at=0.0,
            step=0,
            ever_ready=True,
            logged_in=True,
            ready_at=h.ready_at if h.ever_ready else now,
            relay_wanted=policy.relay,
            restart_reason="",
            twofa_deadline=0.0,
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


def escalate(
    h: Health, now: float, policy: Policy, reason: str, *, login_stall: bool = False
) -> tuple[Health, list[Action]]:
    """Take the next recovery step, unless the hourly budget is spent (then back off).

    A soft restart is tried only on a logged-in Gateway: before login IBC acknowledges RESTART
    and does nothing (`RestartTask.java:58-125`), so a login or 2FA stall starts with a cold
    start of the IBC unit, after removing a stale autorestart token (IBC issue 235)."""
    recent = _last_hour(h, now)
    h, actions = _stop_relay(h)
    h = replace(h, recovery_times=recent)
    step = h.step
    if step == 0 and (not h.ibc_alive or login_stall or not h.logged_in):
        step = 1
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
        first_failure_at=0.0,
        restart_reason="",
        twofa_deadline=0.0,
    )
    if action is Action.GIVE_UP:
        h = _enter(h, State.FAILED, now, f"{reason}; recovery failed, handing over to systemd")
        return h, [*actions, action, Action.SAVE_BUDGET]
    pre = [Action.CLEAR_TOKEN] if action is Action.RESTART_IBC_UNIT else []
    h = _enter(h, State.RECOVERING, now, f"{reason}; {kind.replace('_', ' ')}")
    return h, [*actions, *pre, action, Action.SAVE_BUDGET]


def _planned_reason(h: Health, now: float, policy: Policy) -> str:
    """The restart a failure at `now` belongs to, if it is close to one; "" otherwise."""
    if h.pending_reason and h.soft_restart_at and abs(now - h.soft_restart_at) < 60.0:
        return h.pending_reason
    for at, reason in h.planned:
        if -policy.planned_window_s <= now - at <= policy.planned_window_s:
            return reason
    return ""


def _restarting(
    h: Health, now: float, reason: str, detail: str = ""
) -> tuple[Health, list[Action]]:
    h, actions = _stop_relay(h)
    h = replace(
        h,
        consecutive_failures=0,
        first_failure_at=0.0,
        restart_reason=reason,
        pending_reason="",
        soft_restart_at=0.0,
        logged_in=False,
    )
    h = _enter(h, State.RESTARTING, now, detail or reason)
    return replace(h, detail=detail or reason), actions


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
    if h.state in HALTED:
        return h, []
    if result.outcome.alive:
        return _ready(h, now, policy)
    if h.state not in (State.READY, State.DEGRADED):
        return h, []  # logging in or restarting: deadlines are on_tick's
    planned = _planned_reason(h, now, policy)
    if planned:
        return _restarting(h, now, planned)
    failures = h.consecutive_failures + 1
    first = h.first_failure_at or now
    h = replace(h, consecutive_failures=failures, first_failure_at=first)
    if failures >= policy.failure_threshold and now - first >= policy.settle_s:
        return escalate(h, now, policy, f"API {result.outcome.value} {failures} times")
    return _enter(h, State.DEGRADED, now, f"API {result.outcome.value}"), []


def login_failed_text(mode: str, names: str = "TWS_USERID / TWS_PASSWORD") -> str:
    """Never the password: the settings to check, and which gateway."""
    return f"login failed: check {names} for the {mode} gateway"


def on_log(h: Health, line: IbcLine, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    event = line.event
    if h.state in HALTED:
        return h, []
    if event is IbcEvent.LOGIN_FAILED:
        # One "Login failed" dialog: IBC cold-restarts and would try the same credentials
        # again and again (LoginFailedDialogHandler → StopTask(cold)). Stop that loop now.
        h, actions = _stop_relay(h)
        h = replace(
            h,
            login_failures=h.login_failures + 1,
            login_failed_at=now,
            recoveries=_count(h, "login_failed"),
            twofa_deadline=0.0,
            restart_reason="",
            logged_in=False,
        )
        h = _enter(h, State.LOGIN_FAILED, now, login_failed_text(policy.mode, policy.credentials))
        return h, [*actions, Action.HALT_LOGINS, Action.SAVE_BUDGET]
    if event is IbcEvent.TWOFA_INITIATED:
        h = replace(h, twofa_deadline=now + policy.twofa_timeout_s)
        return _enter(h, State.WAITING_2FA, now, "waiting for 2FA approval"), []
    if event is IbcEvent.TWOFA_DEVICE_SELECT:
        detail = "the Gateway asks which 2FA device to use: choose it over VNC or set TWOFA_DEVICE"
        return _enter(h, State.SELECT_2FA_DEVICE, now, detail), []
    if event is IbcEvent.TWOFA_EXPIRED_WAITING:
        h = replace(h, twofa_deadline=0.0)
        detail = "2FA prompt expired; IBC waits, ibgwd starts a new login after LOGIN_TIMEOUT"
        return _enter(h, State.EXPIRED_2FA, now, detail), []
    if event is IbcEvent.TWOFA_RELOGIN:
        h = replace(h, twofa_deadline=0.0)
        detail = "2FA prompt expired; IBC logs in again in 5 s (a new 2FA prompt)"
        return _enter(h, State.EXPIRED_2FA, now, detail), []
    if event is IbcEvent.TWOFA_EXIT_PENDING:
        h = replace(h, twofa_deadline=0.0)
        then = "relaunches the Gateway" if policy.twofa_restart else "exits"
        detail = f"2FA dialog closed; unless the login completes, IBC {then} in {line.value} s"
        return _enter(h, State.EXPIRED_2FA, now, detail), []
    if event is IbcEvent.LOGIN_COMPLETED:
        h = replace(h, logged_in=True, twofa_deadline=0.0)
        if h.state in LOGIN_STATES:
            return _enter(h, State.LOGGING_IN, now, "login completed, waiting for the API"), []
        return h, []
    if event in (IbcEvent.JVM_STARTING, IbcEvent.LOGIN_DIALOG):
        h = replace(h, logged_in=False)
        if h.state is State.STARTING:
            return _enter(h, State.LOGGING_IN, now, "waiting for login"), []
        return h, []
    if event is IbcEvent.RESTART_SCHEDULED:
        return replace(h, pending_reason=SOFT, detail=f"soft restart at {line.value}"), []
    if event is IbcEvent.SHUTDOWN_STARTED:
        if h.state is State.RESTARTING:
            return h, []  # already known (the API closed a moment before this line arrived)
        reason = _planned_reason(h, now, policy) or h.pending_reason or "Gateway shutting down"
        return _restarting(h, now, reason)
    if event is IbcEvent.COLD_RESTARTING:
        return _restarting(h, now, COLD, "cold restart: a full login follows")
    if event is IbcEvent.JVM_EXITED:
        if h.state in (State.READY, State.DEGRADED) or (
            h.state is State.RESTARTING and not h.restart_reason
        ):
            reason = h.restart_reason or f"Gateway exited with status {line.value}"
            return _restarting(h, now, reason, f"{reason}; IBC's launcher decides what follows")
        return h, []
    if event is IbcEvent.RELAUNCHING:
        if h.state is State.RESTARTING:
            if line.value and h.restart_reason not in (SOFT, COLD):
                # The launcher found the Gateway's token: the Gateway's own daily restart.
                return replace(h, restart_reason=DAILY, detail=DAILY), []
            return h, []
        if h.state in (State.READY, State.DEGRADED, State.RECOVERING):
            return _restarting(h, now, h.restart_reason or "relaunch by IBC")
        return h, []  # before the first launch (a token from the last run): a login follows
    if event is IbcEvent.EXIT_ERROR:
        return replace(h, detail=f"IBC exits after error code {line.value}"), []
    if event is IbcEvent.EXISTING_SESSION:
        return replace(h, detail=f"existing session detected (scenario {line.value})"), []
    if event is IbcEvent.PAUSED:
        return replace(h, detail="IBC is paused (PAUSE command): the launcher ends"), []
    return h, []


def on_ibc_unit(h: Health, alive: bool, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    was_alive, h = h.ibc_alive, replace(h, ibc_alive=alive)
    if alive or not was_alive or h.state in HALTED:
        return h, []
    if h.state is State.RESTARTING and h.restart_reason == LOGOFF:
        # The Gateway's own daily logoff ends IBC's launcher (no token): start a new login,
        # planned, not a recovery (the settings asked for it).
        h = _enter(replace(h, step=0), State.RESTARTING, now, "logged off: starting a new login")
        return h, [Action.RESTART_IBC_UNIT]
    return escalate(h, now, policy, "IBC's launcher exited")


def on_tick(h: Health, now: float, policy: Policy) -> tuple[Health, list[Action]]:
    if h.state is State.RATE_LIMITED and now >= h.backoff_until:
        h = replace(h, step=max(h.step, 1))  # after a pause, a cold start: the session is gone
        return escalate(h, now, policy, "backoff over", login_stall=True)
    if h.state is State.WAITING_2FA and h.twofa_deadline and now >= h.twofa_deadline + 5.0:
        # IBC prints its expiry lines when the dialog closes; a Gateway that keeps the dialog
        # open past SecondFactorAuthenticationTimeout has still no approvable prompt.
        h = replace(h, twofa_deadline=0.0)
        detail = "2FA prompt expired; ibgwd starts a new login after LOGIN_TIMEOUT"
        return _enter(h, State.EXPIRED_2FA, now, detail), []
    if h.state in WAITING_STATES and now - h.since > policy.login_timeout_s:
        stall = h.state is not State.RECOVERING or not h.logged_in
        return escalate(
            h, now, policy, f"not ready after {policy.login_timeout_s:.0f} s", login_stall=stall
        )
    return h, []


def next_attempt_at(h: Health, policy: Policy) -> float:
    """Monotonic time ibgwd's next step happens without a new event (0 = none pending)."""
    if h.state is State.RATE_LIMITED:
        return h.backoff_until
    if h.state in WAITING_STATES:
        return h.since + policy.login_timeout_s
    return 0.0


def set_planned(h: Health, planned: tuple[tuple[float, str], ...]) -> Health:
    return h if planned == h.planned else replace(h, planned=planned)


def soft_restart_accepted(h: Health, at: float) -> Health:
    """IBC accepted RESTART; the Gateway restarts at `at` (monotonic, the next minute)."""
    return replace(h, pending_reason=SOFT, soft_restart_at=at, detail="soft restart scheduled")


def token_removed(h: Health, path: str) -> Health:
    return replace(h, detail=f"{h.detail}; stale autorestart token {path} removed: full login")


def started(h: Health, now: float) -> Health:
    """The IBC unit was (re)started by us: a new login begins (also after a failed login)."""
    state = h.state if h.state is State.RECOVERING else State.LOGGING_IN
    h = replace(
        h,
        state=state,
        since=now,
        detail="waiting for login",
        ibc_alive=True,
        logged_in=False,
        restart_reason="",
        twofa_deadline=0.0,
        consecutive_failures=0,
        first_failure_at=0.0,
    )
    return h


def admin_retry(h: Health, now: float) -> Health:
    """An admin reloaded or restarted: logins are allowed again after a failed login."""
    if h.state is not State.LOGIN_FAILED:
        return h
    return replace(h, state=State.STARTING, since=now, detail="login retried by an admin")


# ---- the recovery budget, persisted across ibgwd restarts (wall-clock seconds) ----


def budget_to_wall(h: Health, mono_now: float, wall_now: float) -> dict[str, object]:
    def wall(t: float) -> float:
        return round(wall_now - (mono_now - t), 3)

    return {
        "recoveries": [wall(t) for t in _last_hour(h, mono_now)],
        "backoff_until": wall(h.backoff_until) if h.state is State.RATE_LIMITED else 0.0,
        "rate_limit_hits": h.rate_limit_hits,
        "login_failures": h.login_failures,
        "login_failed_at": wall(h.login_failed_at) if h.login_failed_at else 0.0,
    }


def budget_from_wall(
    h: Health, data: dict[str, object], mono_now: float, wall_now: float
) -> Health:
    """Restore what a previous run of ibgwd spent; anything malformed is ignored."""

    def mono(value: object) -> float | None:
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            return mono_now - (wall_now - float(value))
        return None

    times = data.get("recoveries")
    recoveries = tuple(
        t for t in (mono(v) for v in (times if isinstance(times, list) else [])) if t is not None
    )
    recent = tuple(t for t in recoveries if 0 <= mono_now - t < HOUR_S)
    hits = data.get("rate_limit_hits")
    failures = data.get("login_failures")
    return replace(
        h,
        recovery_times=recent,
        rate_limit_hits=hits if isinstance(hits, int) and recent else 0,
        login_failures=failures if isinstance(failures, int) else 0,
    )
