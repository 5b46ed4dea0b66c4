"""The pure health state machine: probe results, IBC log lines and unit deaths in; actions out.

Log sequences are IBC 3.24.1's real lines (`ibcstart.sh`, `LoginManager.java`,
`LoginFailedDialogHandler.java`, `StopTask.java`, `TwsListener.logWindow`), as in
`../shared/reference/ibc-lifecycle.md` §3-§9.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ibgwd.probes.api import Outcome, ProbeResult
from ibgwd.status import State
from ibgwd.supervisor import health
from ibgwd.supervisor.health import Action, Health, Policy
from ibgwd.supervisor.ibclog import classify

POLICY = Policy(
    failure_threshold=3,
    login_timeout_s=60,
    recovery_max_per_hour=2,
    recovery_backoff_s=30,
    relay=True,
    settle_s=2.0,
)
OK = ProbeResult(Outcome.OK, 0.001, 178)
HUNG = ProbeResult(Outcome.TIMEOUT, 3.0)
REFUSED = ProbeResult(Outcome.REFUSED, 0.0001)
P = "2026-11-29 23:45:00:017 IBC: "


def ready(now: float = 10.0) -> Health:
    h = health.started(Health(), 0.0)
    h, actions = health.on_probe(h, OK, now, POLICY)
    assert h.state is State.READY and actions == [Action.START_RELAY]
    return h


def feed(h: Health, now: float, *lines: str) -> tuple[Health, list[Action]]:
    out: list[Action] = []
    for line in lines:
        h, actions = health.on_log(h, classify(line), now, POLICY)
        out += actions
    return h, out


def test_first_answer_makes_ready_and_starts_the_relay_once() -> None:
    h = ready()
    h, actions = health.on_probe(h, OK, 11.0, POLICY)
    assert h.state is State.READY and actions == []


def test_refused_while_logging_in_is_not_a_failure() -> None:
    h = health.started(Health(), 0.0)
    for t in range(1, 10):
        h, actions = health.on_probe(h, REFUSED, float(t), POLICY)
        assert actions == [] and h.state is State.LOGGING_IN


def test_a_failing_api_is_confirmed_after_the_threshold_and_the_settle_time() -> None:
    h = replace(ready(), ibc_alive=True)
    for t in (20.0, 20.1, 20.2, 21.9):
        h, actions = health.on_probe(h, HUNG, t, POLICY)
        assert h.state is State.DEGRADED and actions == []
    h, actions = health.on_probe(h, HUNG, 22.1, POLICY)
    assert h.state is State.RECOVERING
    assert actions == [Action.STOP_RELAY, Action.SOFT_RESTART, Action.SAVE_BUDGET]
    assert h.recoveries == {"soft_restart": 1}


def test_escalation_goes_soft_restart_then_unit_restart_then_give_up() -> None:
    h = replace(ready(), ibc_alive=True)
    seen = []
    now = 100.0
    policy = replace(POLICY, recovery_max_per_hour=10)
    for _ in range(3):
        h, actions = health.escalate(h, now, policy, "hung")
        seen.append(next(a for a in actions if a in health.ESCALATION))
        now += 1
    assert seen == [Action.SOFT_RESTART, Action.RESTART_IBC_UNIT, Action.GIVE_UP]
    assert h.state is State.FAILED


def test_a_login_stall_never_starts_with_a_soft_restart_and_clears_a_stale_token() -> None:
    """IBC acknowledges RESTART before login and does nothing (RestartTask.java:58-125); a
    login that stalls with a token present is IBC issue 235: remove it, start cold."""
    h = replace(health.started(Health(), 0.0), ibc_alive=True)
    h, _ = feed(h, 1.0, "IBC returned exit status 0", P + "Re-starting session")
    h, actions = health.on_tick(h, 59.0, POLICY)
    assert actions == []
    h, actions = health.on_tick(h, 61.0, POLICY)
    assert actions == [Action.CLEAR_TOKEN, Action.RESTART_IBC_UNIT, Action.SAVE_BUDGET]
    assert h.state is State.RECOVERING and h.recoveries == {"unit_restart": 1}
    h = health.token_removed(h, "/s/abc/autorestart")
    assert "stale autorestart token /s/abc/autorestart removed" in h.detail


def test_dead_launcher_is_restarted_never_soft_restarted_nor_given_up() -> None:
    h = replace(ready(), ibc_alive=True)
    policy = replace(POLICY, recovery_max_per_hour=10)
    h, actions = health.on_ibc_unit(h, False, 50.0, policy)
    assert Action.RESTART_IBC_UNIT in actions and Action.SOFT_RESTART not in actions
    h = health.started(h, 51.0)
    h, actions = health.on_ibc_unit(h, False, 52.0, policy)
    assert Action.RESTART_IBC_UNIT in actions


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
    assert Action.RESTART_IBC_UNIT in actions and h.state is State.RECOVERING


# ---- the Gateway's own restarts --------------------------------------------------------

NIGHTLY = (
    P + "detected dialog entitled: Shutdown progress; event=Opened",
    P + "CommandServer is shutdown",
    "IBC returned exit status 0",
    "Finding autorestart file",
    "autorestart file found at /s/./abcdef/autorestart: authentication will not be required",
    "IBC will restart shortly",
    P + "Re-starting session",
    P + "Login has completed",
)


def test_nightly_token_restart_is_planned_no_recovery_no_signal_to_ibc() -> None:
    """Shutdown progress → API gone → JVM exits 0 → token → relaunch → logged in → API."""
    h = replace(ready(), ibc_alive=True)
    h, actions = feed(h, 20.0, NIGHTLY[0])
    assert h.state is State.RESTARTING and actions == [Action.STOP_RELAY]
    for t in range(21, 40):  # 20 s of refused probes (the shutdown phase and the relaunch)
        h, actions = health.on_probe(h, REFUSED, float(t), POLICY)
        assert actions == []
    h, actions = feed(h, 40.0, *NIGHTLY[1:])
    assert actions == [] and h.state is State.RESTARTING
    assert h.restart_reason == "daily restart"
    h, actions = health.on_tick(h, 45.0, POLICY)
    assert actions == []
    h, actions = health.on_probe(h, OK, 46.0, POLICY)
    assert h.state is State.READY and actions == [Action.START_RELAY]
    assert h.recoveries == {}


def test_api_loss_near_the_scheduled_restart_time_is_the_restart_even_before_its_log_line() -> None:
    h = replace(ready(), ibc_alive=True, planned=((100.0, health.DAILY),))
    h, actions = health.on_probe(h, REFUSED, 100.2, POLICY)
    assert h.state is State.RESTARTING and h.restart_reason == "daily restart"
    assert actions == [Action.STOP_RELAY]
    h, _ = feed(h, 100.3, NIGHTLY[0])
    assert h.state is State.RESTARTING and h.restart_reason == "daily restart"


def test_sunday_cold_restart_is_planned_and_its_full_login_is_not_a_failure() -> None:
    h = replace(ready(), ibc_alive=True)
    h, actions = feed(
        h,
        20.0,
        P + "Login has completed: exiting via [File, Close] menu",  # not a login (StopTask:85)
        P + "detected dialog entitled: Shutdown progress; event=Opened",
        "IBC returned exit status 0",
        "IBC will cold-restart shortly",
        "IBC will restart shortly",
        P + "Starting session: will exit if login dialog is not displayed within 60 seconds",
        P + "Login dialog WINDOW_OPENED: LoginState is LOGGED_OUT",
    )
    assert h.state is State.RESTARTING and h.restart_reason == "cold restart"
    assert actions == [Action.STOP_RELAY]
    h, actions = feed(h, 30.0, P + "Second Factor Authentication initiated")
    assert h.state is State.WAITING_2FA
    h, _ = feed(h, 40.0, P + "Login has completed")
    h, actions = health.on_probe(h, OK, 41.0, POLICY)
    assert h.state is State.READY and h.recoveries == {}


def test_soft_restart_accepted_then_carried_out_is_planned() -> None:
    h = replace(ready(), ibc_alive=True)
    h = health.soft_restart_accepted(h, 60.0)
    h, _ = feed(h, 20.0, P + "Setting auto-restart time to 11:46 PM")
    assert h.state is State.READY and h.pending_reason == "soft restart"
    h, actions = health.on_probe(h, REFUSED, 60.1, POLICY)  # before the log line
    assert h.state is State.RESTARTING and h.restart_reason == "soft restart"
    h, actions = feed(h, 61.0, *NIGHTLY)
    assert actions == [] and h.restart_reason == "soft restart"
    h, actions = health.on_probe(h, OK, 70.0, POLICY)
    assert h.state is State.READY and h.recoveries == {}


def test_a_relaunch_that_never_answers_escalates_after_the_login_timeout() -> None:
    h = replace(ready(), ibc_alive=True)
    h, _ = feed(h, 20.0, *NIGHTLY[:7])
    h, actions = health.on_tick(h, 20.0 + 61, POLICY)
    assert Action.CLEAR_TOKEN in actions and Action.RESTART_IBC_UNIT in actions


# ---- login failures -----------------------------------------------------------------------

LOGIN_FAILED_DIALOG = (
    P + "detected dialog entitled: Login failed; event=Opened",
    P + "detected dialog entitled: Login failed; event=Activated",
    P + "Login failed",
    P + "Cold restart in progress",
    P + "detected dialog entitled: Login failed; event=Focused",
    P + "detected dialog entitled: Login failed; event=Lost focus",
    P + "detected dialog entitled: Login failed; event=Deactivated",
    P + "detected dialog entitled: Login failed; event=Closed",
    P + "Login has not completed: exiting immediately",
    "IBC returned exit status 0",
    "IBC will cold-restart shortly",
)


def test_one_login_failed_dialog_is_one_failure_and_halts_logins_until_an_admin_acts() -> None:
    h = replace(health.started(Health(), 0.0), ibc_alive=True)
    h, actions = feed(h, 5.0, *LOGIN_FAILED_DIALOG)
    assert actions == [Action.HALT_LOGINS, Action.SAVE_BUDGET]
    assert h.state is State.LOGIN_FAILED and h.login_failures == 1
    assert h.recoveries == {"login_failed": 1}
    assert h.detail == "login failed: check TWS_USERID / TWS_PASSWORD for the paper gateway"
    h, actions = health.on_ibc_unit(h, False, 6.0, POLICY)  # we stopped it
    assert actions == []
    for t in (100.0, 10_000.0, 200_000.0):  # no automatic retry, ever
        h, actions = health.on_tick(h, t, POLICY)
        assert actions == [] and h.state is State.LOGIN_FAILED
    h = health.admin_retry(h, 300_000.0)
    h = health.started(h, 300_000.0)
    assert h.state is State.LOGGING_IN


# ---- 2FA ------------------------------------------------------------------------------------


def test_twofa_deadline_then_expiry_lines_then_login_timeout() -> None:
    h = health.started(Health(), 0.0)
    h, _ = feed(h, 5.0, P + "Second Factor Authentication initiated")
    assert h.state is State.WAITING_2FA and h.twofa_deadline == pytest.approx(185.0)
    h, _ = feed(
        h,
        186.0,
        P + "Duration since login: 181 seconds",
        P + "Re-login after second factor authentication timeout not required",
    )
    assert h.state is State.EXPIRED_2FA and h.twofa_deadline == 0.0
    assert health.next_attempt_at(h, POLICY) == pytest.approx(186.0 + 60)
    h, actions = health.on_tick(h, 186.0 + 61, POLICY)
    assert Action.RESTART_IBC_UNIT in actions and Action.SOFT_RESTART not in actions


def test_twofa_relogin_and_device_selection_and_exit_pending_are_their_own_states() -> None:
    h = health.started(Health(), 0.0)
    h, _ = feed(h, 5.0, P + "Re-login after second factor authentication timeout in 5 second")
    assert h.state is State.EXPIRED_2FA and "in 5 s" in h.detail
    h, _ = feed(h, 11.0, P + "Second Factor Authentication initiated")
    assert h.state is State.WAITING_2FA
    h, _ = feed(h, 12.0, P + "If login has not completed, IBC will exit in 60 seconds")
    assert h.state is State.EXPIRED_2FA and "exits in 60 s" in h.detail
    assert h.twofa_deadline == 0.0
    h2 = health.started(Health(), 0.0)
    h2, _ = feed(
        h2,
        3.0,
        P + "You should specify the required second factor device using the SecondFactorDevice "
        "setting in config.ini",
    )
    assert h2.state is State.SELECT_2FA_DEVICE


def test_a_2fa_prompt_past_its_deadline_without_lines_shows_expired() -> None:
    h = health.started(Health(), 0.0)
    h, _ = feed(h, 5.0, P + "Second Factor Authentication initiated")
    policy = replace(POLICY, login_timeout_s=600)
    h, _ = health.on_tick(h, 189.0, policy)
    assert h.state is State.WAITING_2FA
    h, _ = health.on_tick(h, 191.0, policy)
    assert h.state is State.EXPIRED_2FA


# ---- the budget survives ibgwd restarts -------------------------------------------------


def test_budget_round_trips_through_wall_clock_and_drops_old_entries() -> None:
    h = replace(ready(), recovery_times=(100.0, 3000.0), login_failures=2, rate_limit_hits=1)
    saved = health.budget_to_wall(h, mono_now=3100.0, wall_now=1_000_000.0)
    assert saved["recoveries"] == [997_000.0, 999_900.0]
    restored = health.budget_from_wall(Health(), saved, mono_now=50.0, wall_now=1_000_700.0)
    # 997_000 is now 3700 s ago (outside the hour); 999_900 is 800 s ago.
    assert restored.recovery_times == (pytest.approx(-750.0),)
    assert restored.login_failures == 2
    junk = health.budget_from_wall(Health(), {"recoveries": "x", "login_failures": "y"}, 1.0, 2.0)
    assert junk.recovery_times == () and junk.login_failures == 0


def test_the_daily_logoff_is_planned_and_followed_by_a_new_login_not_a_recovery() -> None:
    """AutoLogoffTime: the Gateway shuts down without a token, IBC's launcher ends
    (ibcstart.sh l.562: no token, exit 0); a new login is what the settings asked for."""
    h = replace(ready(), ibc_alive=True, planned=((100.0, health.LOGOFF),))
    h, actions = feed(h, 100.5, NIGHTLY[0])
    assert h.state is State.RESTARTING and h.restart_reason == "daily logoff"
    h, actions = feed(h, 104.0, "IBC returned exit status 0", "autorestart file not found: x")
    assert actions == [] and h.state is State.RESTARTING
    h, actions = health.on_ibc_unit(h, False, 104.1, POLICY)
    assert actions == [Action.RESTART_IBC_UNIT] and h.recoveries == {}
    h = health.started(h, 105.0)
    h, actions = health.on_probe(h, OK, 110.0, POLICY)
    assert h.state is State.READY and h.recoveries == {}
    # Without the schedule (an unplanned exit of the launcher) it is a recovery.
    h = replace(ready(), ibc_alive=True)
    h, _ = feed(h, 20.0, NIGHTLY[0])
    h, actions = health.on_ibc_unit(h, False, 24.0, POLICY)
    assert Action.RESTART_IBC_UNIT in actions and h.recoveries == {"unit_restart": 1}
