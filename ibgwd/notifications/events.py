"""Which notifications a change of status deserves (pure: no I/O, no clock, no threads).

The supervisor hands every new Status snapshot to `Tracker.observe`; a timer calls
`Tracker.tick` so that "down for longer than NOTIFY_AFTER" and a 2FA deadline that passes
without any change of status are noticed too. Each returns the events to send, in order.
An event carries only what a phone notification needs: never a secret.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ibgwd.status import GatewayStatus, State, Status

# IBC's SecondFactorAuthenticationTimeout as ibgwd renders it (config.ini.j2): the prompt
# is gone after this, unless the snapshot carries the exact deadline.
TWOFA_TIMEOUT_S = 180.0
# The health loop reports an expired prompt itself (EXPIRED_2FA, with what IBC does next) a few
# seconds after the deadline; the timer is the fallback when no snapshot says so.
EXPIRY_GRACE_S = 30.0


class Kind(enum.Enum):
    TWOFA_PROMPT = "twofa_prompt"
    TWOFA_EXPIRED = "twofa_expired"
    LOGIN_FAILED = "login_failed"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"
    DOWN = "down"
    READY = "ready"
    RESTART_SCHEDULED = "restart_scheduled"
    TEST = "test"  # ibgwdctl notify-test


# ntfy's priorities (1 min .. 5 max); Gotify reads the same field (0..10).
PRIORITY = {
    Kind.TWOFA_PROMPT: 5,
    Kind.TWOFA_EXPIRED: 4,
    Kind.LOGIN_FAILED: 4,
    Kind.RATE_LIMITED: 5,
    Kind.FAILED: 5,
    Kind.DOWN: 4,
    Kind.READY: 3,
    Kind.RESTART_SCHEDULED: 2,
    Kind.TEST: 3,
}
TAGS = {
    Kind.TWOFA_PROMPT: "iphone",
    Kind.TWOFA_EXPIRED: "hourglass",
    Kind.LOGIN_FAILED: "no_entry",
    Kind.RATE_LIMITED: "rotating_light",
    Kind.FAILED: "rotating_light",
    Kind.DOWN: "warning",
    Kind.READY: "white_check_mark",
    Kind.RESTART_SCHEDULED: "calendar",
    Kind.TEST: "bell",
}


@dataclass(frozen=True)
class Event:
    kind: Kind
    instance: str
    mode: str  # live | paper
    state: str  # the gateway's state when the event was derived
    timestamp: float  # Unix seconds
    message: str
    deadline_timestamp: float = 0.0  # 2FA: when the prompt expires; restart: when it happens
    since_timestamp: float = 0.0  # down: since when the gateway has not been ready

    @property
    def title(self) -> str:
        mode = f" ({self.mode})" if self.mode else ""
        return f"ibgwd {self.instance}{mode}: {TITLES[self.kind]}"

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]

    def as_dict(self, topic: str = "") -> dict[str, Any]:
        """The JSON body: ntfy's (topic, title, message, priority, tags) and Gotify's (title,
        message, priority) fields plus ibgwd's own, so a generic webhook gets everything."""
        data: dict[str, Any] = {
            "title": self.title,
            "message": self.message,
            "priority": self.priority,
            "tags": [TAGS[self.kind], "ibgwd"],
            "event": self.kind.value,
            "instance": self.instance,
            "mode": self.mode,
            "state": self.state,
            "timestamp": round(self.timestamp, 3),
            "deadline_timestamp": round(self.deadline_timestamp, 3),
            "since_timestamp": round(self.since_timestamp, 3),
        }
        if topic:
            data["topic"] = topic
        return data

    def environment(self) -> dict[str, str]:
        """What NOTIFY_COMMAND finds in its environment."""
        return {
            "IBGWD_EVENT": self.kind.value,
            "IBGWD_INSTANCE": self.instance,
            "IBGWD_MODE": self.mode,
            "IBGWD_STATE": self.state,
            "IBGWD_TITLE": self.title,
            "IBGWD_MESSAGE": self.message,
            "IBGWD_PRIORITY": str(self.priority),
            "IBGWD_TIMESTAMP": f"{self.timestamp:.0f}",
            "IBGWD_DEADLINE": f"{self.deadline_timestamp:.0f}" if self.deadline_timestamp else "",
            "IBGWD_SINCE": f"{self.since_timestamp:.0f}" if self.since_timestamp else "",
        }


TITLES = {
    Kind.TWOFA_PROMPT: "approve the login in IBKR Mobile",
    Kind.TWOFA_EXPIRED: "2FA prompt expired",
    Kind.LOGIN_FAILED: "login failed",
    Kind.RATE_LIMITED: "recovery rate limit reached",
    Kind.FAILED: "gateway failed",
    Kind.DOWN: "gateway down",
    Kind.READY: "ready",
    Kind.RESTART_SCHEDULED: "restart scheduled",
    Kind.TEST: "test notification",
}


def test_event(instance: str, state: str, now: float) -> Event:
    """What `ibgwdctl notify-test` sends: proves the path to the phone before a 2FA needs it."""
    return Event(
        Kind.TEST,
        instance,
        "",
        state,
        now,
        "This is a test from ibgwd: notifications reach you. The next ones come when ibgwd "
        "needs you (a 2FA approval, a failed login, a gateway down).",
    )


def _when(ts: float) -> str:
    return time.strftime("%a %Y-%m-%d %H:%M %Z", time.localtime(ts))


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S %Z", time.localtime(ts))


def _span(seconds: float) -> str:
    s = max(round(seconds), 0)
    minutes, s = divmod(s, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes}min"
    if minutes:
        return f"{minutes}min {s}s" if s else f"{minutes}min"
    return f"{s}s"


@dataclass(frozen=True)
class _Gateway:
    """What the tracker remembers of one gateway between snapshots."""

    state: State = State.STARTING
    not_ready_since: float = 0.0  # 0 = ready
    ever_ready: bool = False
    problem_sent: bool = False  # a problem was notified during the current outage
    down_sent: bool = False
    twofa_deadline: float = 0.0  # of the prompt being waited on, 0 = none
    twofa_expired_sent: bool = False
    login_failures: int = 0
    restart_at: float = 0.0
    cold_restart_at: float = 0.0


def _deadline(g: GatewayStatus) -> float:
    return g.twofa_deadline_timestamp


def _login_failures(g: GatewayStatus) -> int:
    return max(g.login_failures, int(g.recoveries.get("login_failed", 0)))


def _login_failed_reason(g: GatewayStatus) -> str:
    return g.login_failed_reason or g.detail


@dataclass
class Tracker:
    """Remembers the last snapshot per gateway and derives the events of each new one."""

    notify_after_s: float
    twofa_timeout_s: float = TWOFA_TIMEOUT_S
    _gateways: dict[str, _Gateway] = field(default_factory=dict)
    _instance: str = ""

    def observe(self, status: Status, now: float) -> list[Event]:
        self._instance = status.instance
        events: list[Event] = []
        for g in status.gateways:
            before = self._gateways.get(g.mode)
            after, new = self._gateway(status, g, before, now)
            self._gateways[g.mode] = after
            events += new
        return events

    def tick(self, now: float) -> list[Event]:
        """Deadlines that pass without a new snapshot: down too long, 2FA prompt gone."""
        events: list[Event] = []
        for mode, m in self._gateways.items():
            m, new = self._deadlines(mode, m, now)
            self._gateways[mode] = m
            events += new
        return events

    def _event(
        self, kind: Kind, mode: str, state: State, now: float, message: str, **kw: float
    ) -> Event:
        return Event(kind, self._instance, mode, state.value, now, message, **kw)

    def _deadlines(self, mode: str, m: _Gateway, now: float) -> tuple[_Gateway, list[Event]]:
        events: list[Event] = []
        if m.state is State.STOPPING:
            return m, events
        if (
            m.state is State.WAITING_2FA
            and m.twofa_deadline
            and now >= m.twofa_deadline + EXPIRY_GRACE_S
            and not m.twofa_expired_sent
        ):
            events.append(
                self._event(
                    Kind.TWOFA_EXPIRED,
                    mode,
                    m.state,
                    now,
                    "The 2FA prompt was not approved in time.",
                    deadline_timestamp=m.twofa_deadline,
                )
            )
            m = replace(m, twofa_expired_sent=True, problem_sent=True)
        if (
            m.not_ready_since
            and not m.down_sent
            and self.notify_after_s > 0
            and now - m.not_ready_since >= self.notify_after_s
        ):
            events.append(
                self._event(
                    Kind.DOWN,
                    mode,
                    m.state,
                    now,
                    f"The API has not been ready for {_span(now - m.not_ready_since)} "
                    f"(state {m.state.value}).",
                    since_timestamp=m.not_ready_since,
                )
            )
            m = replace(m, down_sent=True, problem_sent=True)
        return m, events

    def _gateway(
        self, status: Status, g: GatewayStatus, before: _Gateway | None, now: float
    ) -> tuple[_Gateway, list[Event]]:
        m = before or _Gateway(not_ready_since=status.started_timestamp or now)
        old = m.state if before else None
        state = g.state
        events: list[Event] = []

        def add(kind: Kind, message: str, **kw: float) -> None:
            nonlocal m
            events.append(self._event(kind, g.mode, state, now, message, **kw))
            if kind not in (Kind.READY, Kind.RESTART_SCHEDULED):
                m = replace(m, problem_sent=True)

        # 2FA: a prompt is a new one when the state enters WAITING_2FA or its deadline moves.
        deadline = _deadline(g)
        if state is State.SELECT_2FA_DEVICE and old is not State.SELECT_2FA_DEVICE:
            add(
                Kind.TWOFA_PROMPT,
                "The Gateway asks which 2FA device to use: choose it in its window (VNC, "
                "ibgwdctl screenshot) or set TWOFA_DEVICE.",
            )
        if state is State.WAITING_2FA:
            fresh = old is not State.WAITING_2FA or (deadline and deadline != m.twofa_deadline)
            if fresh:
                if old is State.WAITING_2FA and m.twofa_deadline and not m.twofa_expired_sent:
                    add(
                        Kind.TWOFA_EXPIRED,
                        "The 2FA prompt was not approved in time; IBC asks again.",
                        deadline_timestamp=m.twofa_deadline,
                    )
                deadline = deadline or now + self.twofa_timeout_s
                add(
                    Kind.TWOFA_PROMPT,
                    f"Approve the login in IBKR Mobile before {_clock(deadline)} "
                    f"({_span(deadline - now)} left).",
                    deadline_timestamp=deadline,
                )
                m = replace(m, twofa_deadline=deadline, twofa_expired_sent=False)
        elif old is State.WAITING_2FA:
            approved = state is State.READY or (
                state is State.LOGGING_IN and "complet" in g.detail.lower()
            )  # EXPIRED_2FA, RECOVERING, RESTARTING ...: the prompt is gone unapproved
            if not approved and state is not State.STOPPING and not m.twofa_expired_sent:
                add(
                    Kind.TWOFA_EXPIRED,
                    "The 2FA prompt was not approved in time"
                    + (f" ({g.detail})." if g.detail else "."),
                    deadline_timestamp=m.twofa_deadline,
                )
            m = replace(m, twofa_deadline=0.0, twofa_expired_sent=False)

        failures = _login_failures(g)
        entering = state is State.LOGIN_FAILED and old is not State.LOGIN_FAILED
        if (failures > m.login_failures and before is not None) or entering:
            reason = _login_failed_reason(g)
            halted = (
                " ibgwd makes no new attempt until you fix it and restart (a wrong password "
                "tried again and again can lock the account)."
                if state is State.LOGIN_FAILED
                else ""
            )
            add(
                Kind.LOGIN_FAILED,
                "IB refused the login" + (f" ({reason})." if reason else ".") + halted,
            )
        m = replace(m, login_failures=failures)

        if state is not old:
            if state is State.RATE_LIMITED:
                add(
                    Kind.RATE_LIMITED,
                    "Too many recoveries within the hour; ibgwd waits before trying again"
                    + (f" ({g.detail})." if g.detail else "."),
                )
            elif state is State.FAILED:
                add(
                    Kind.FAILED,
                    "ibgwd gave up on this gateway" + (f": {g.detail}." if g.detail else "."),
                )

        if state is State.READY:
            if m.not_ready_since and (m.problem_sent or not m.ever_ready):
                took = _span(now - m.not_ready_since)
                again = "again " if m.ever_ready else ""
                add(
                    Kind.READY,
                    f"The API is ready {again}on port {g.relay_port or g.api_port} (after {took}).",
                    since_timestamp=m.not_ready_since,
                )
            m = replace(
                m, not_ready_since=0.0, ever_ready=True, problem_sent=False, down_sent=False
            )
        elif not m.not_ready_since:
            m = replace(m, not_ready_since=now)

        # Announced: the next full login (it needs a human), and a soft restart IBC accepted
        # (an admin's `ibgwdctl restart`). The Gateway's daily restart costs nobody anything.
        restart_at, cold_at = g.soft_restart_timestamp, g.next_cold_restart_timestamp
        if cold_at and cold_at != m.cold_restart_at and cold_at > now:
            add(
                Kind.RESTART_SCHEDULED,
                f"The next full login (a 2FA approval in IBKR Mobile) is at {_when(cold_at)}.",
                deadline_timestamp=cold_at,
            )
        if restart_at and restart_at != m.restart_at and restart_at > now:
            add(
                Kind.RESTART_SCHEDULED,
                f"Soft restart (no 2FA) at {_clock(restart_at)}; the API is down for a minute.",
                deadline_timestamp=restart_at,
            )
        m = replace(m, state=state, restart_at=restart_at, cold_restart_at=cold_at)

        m, late = self._deadlines(g.mode, m, now)
        return m, events + late
