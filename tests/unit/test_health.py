"""The pure health state machine: probe results, IBC log lines and unit deaths in; actions out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ibgwd.probes.api import Outcome, ProbeResult
from ibgwd.status import State
from ibgwd.supervisor import health
from ibgwd.supervisor.health import Action, Health, LogEvent, Policy

POLICY = Policy(
    failure_threshold=3,
    login_timeout_s=60,
    recovery_max_per_hour=2,
    recovery_backoff_s=30,
    relay=True,
)
OK = ProbeResult(Outcome.OK, 0.001, 178)
HUNG = ProbeResult(Outcome.TIMEOUT, 3.0)
REFUSED = ProbeResult(Outcome.REFUSED, 0.0001)


def ready(now: float = 10.0) -> Health:
    h = health.started(Health(), 0.0)
    h, actions = health.on_probe(h, OK, now, POLICY)
    assert h.state is State.READY and actions == [Action.START_RELAY]
    return h


def test_first_answer_makes_ready_and_starts_the_relay_once() -> None:
    h = ready()
    h, actions = health.on_probe(h, OK, 11.0, POLICY)
    assert h.state is State.READY and actions == []


def test_refused_while_logging_in_is_not_a_failure() -> None:
    h = health.started(Health(), 0.0)
    for t in range(1, 10):
        h, actions = health.on_probe(h, REFUSED, float(t), POLICY)
        assert actions == [] and h.state is State.LOGGING_IN


def test_failures_below_threshold_degrade_then_threshold_soft_restarts() -> None:
    h = ready()
    h, actions = health.on_probe(h, HUNG, 20.0, POLICY)
    assert h.state is State.DEGRADED and actions == []
    h, _ = health.on_probe(h, HUNG, 21.0, POLICY)
    h, actions = health.on_probe(h, HUNG, 22.0, POLICY)
    assert h.state is State.RECOVERING
    assert actions == [Action.STOP_RELAY, Action.SOFT_RESTART]
    assert h.recoveries == {"soft_restart": 1}


def test_escalation_goes_soft_restart_then_unit_restart_then_give_up() -> None:
    h = replace(ready(), ibc_alive=True)
    seen = []
    now = 100.0
    for _ in range(3):
        h, actions = health.escalate(h, now, replace(POLICY, recovery_max_per_hour=10), "hung")
        seen.append(actions[-1])
        now += 1
    assert seen == [Action.SOFT_RESTART, Action.RESTART_IBC_UNIT, Action.GIVE_UP]
    assert h.state is State.FAILED


def test_dead_ibc_process_is_restarted_never_soft_restarted_nor_given_up() -> None:
    h = replace(ready(), ibc_alive=True)
    h, actions = health.on_ibc_unit(h, False, 50.0, replace(POLICY, recovery_max_per_hour=10))
    assert actions == [Action.STOP_RELAY, Action.RESTART_IBC_UNIT]
    h = health.started(h, 51.0)
    h, actions = health.on_ibc_unit(h, False, 52.0, replace(POLICY, recovery_max_per_hour=10))
    assert actions[-1] is Action.RESTART_IBC_UNIT


def test_recovery_budget_exhausted_stops_the_gateway_and_backs_off_exponentially() -> None:
    h = replace(ready(), ibc_alive=True)
    now = 100.0
    for _ in range(2):  # the hourly budget
        h, _ = health.on_ibc_unit(h, False, now, POLICY)
        h = health.started(h, now)
        now += 1
    h, actions = health.on_ibc_unit(h, False, now, POLICY)
    assert h.state is State.RATE_LIMITED
    assert actions[-1] is Action.STOP_IBC_UNIT
    assert h.backoff_until == pytest.approx(now + 30)
    h, actions = health.on_tick(h, now + 29, POLICY)
    assert actions == []
    h, actions = health.on_tick(h, now + 31, POLICY)  # budget still spent: back off longer
    assert h.state is State.RATE_LIMITED and h.backoff_until == pytest.approx(now + 31 + 60)
    h, actions = health.on_tick(h, now + 3600 + 100, POLICY)  # an hour later: retry cold
    assert actions == [Action.RESTART_IBC_UNIT] and h.state is State.RECOVERING


def test_repeated_login_failures_stop_at_the_limit() -> None:
    h = health.started(Health(), 0.0)
    h, _ = health.on_log(h, LogEvent.LOGIN_FAILED, 1.0, POLICY)
    h, _ = health.on_log(h, LogEvent.LOGIN_FAILED, 2.0, POLICY)
    assert h.state is State.LOGGING_IN
    h, actions = health.on_log(h, LogEvent.LOGIN_FAILED, 3.0, POLICY)
    assert h.state is State.RATE_LIMITED and Action.STOP_IBC_UNIT in actions
    assert h.recoveries["login_failed"] == 3


def test_gateway_own_restart_is_a_grace_window_not_a_failure() -> None:
    h = ready()
    h, actions = health.on_log(h, LogEvent.RESTART_SCHEDULED, 20.0, POLICY)
    assert actions == [] and h.state is State.READY
    for t in (21.0, 22.0, 23.0, 24.0, 25.0):
        h, actions = health.on_probe(h, REFUSED, t, POLICY)
        assert Action.SOFT_RESTART not in actions and Action.RESTART_IBC_UNIT not in actions
    assert h.state is State.RESTARTING and not h.relay_wanted
    h, actions = health.on_probe(h, OK, 30.0, POLICY)
    assert h.state is State.READY and actions == [Action.START_RELAY]
    assert h.recoveries == {}


def test_twofa_log_line_shows_waiting_for_2fa_and_login_timeout_escalates() -> None:
    h = health.started(Health(), 0.0)
    h, _ = health.on_log(h, LogEvent.TWOFA, 5.0, POLICY)
    assert h.state is State.WAITING_2FA
    h, actions = health.on_tick(h, 5.0 + 59, POLICY)
    assert actions == []
    h, actions = health.on_tick(h, 5.0 + 61, POLICY)
    assert h.state is State.RECOVERING and actions


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("2026-11-29 04:02:36:017 IBC: Login has completed", LogEvent.LOGIN_COMPLETED),
        ("IBC: Second Factor Authentication initiated", LogEvent.TWOFA),
        ("autorestart file found at /x: authentication will not be required", LogEvent.RESTARTING),
        ("IBC: Login failed", LogEvent.LOGIN_FAILED),
        ("IBC: Setting auto-restart time to 04:05 AM", LogEvent.RESTART_SCHEDULED),
        ("IBC: Click button: Paper Log In", None),
    ],
)
def test_ibc_log_lines_are_classified(line: str, event: LogEvent | None) -> None:
    assert health.classify_log_line(line) is event
