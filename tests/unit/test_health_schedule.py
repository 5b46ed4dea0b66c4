"""The Gateway's schedule (pure), the lifecycle status text and the launcher's files."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ibgwd import schedule
from ibgwd.status import GatewayStatus, State
from ibgwd.supervisor import budget, lifecycle

NY = "America/New_York"


def ts(text: str, tz: str = NY) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_restart_time_defaults_to_the_gateways_own_unless_a_logoff_is_set() -> None:
    assert schedule.effective_restart_time("", "") == "11:45 PM"
    assert schedule.effective_restart_time("04:05 AM", "") == "04:05 AM"
    assert schedule.effective_restart_time("", "11:50 PM") == ""  # IBC: logoff instead
    assert schedule.effective_restart_time("04:05 AM", "11:50 PM") == "04:05 AM"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-12-04T10:00:00", "2026-12-04T23:45:00"),
        ("2026-12-04T23:45:00", "2026-12-05T23:45:00"),  # strictly after now
        ("2026-12-04T23:50:00", "2026-12-05T23:45:00"),
    ],
)
def test_next_daily_restart_in_the_gateways_time_zone(now: str, expected: str) -> None:
    assert schedule.next_daily(ts(now), "11:45 PM", NY) == ts(expected)


def test_next_daily_restart_across_a_dst_change_keeps_local_time() -> None:
    # 2026-11-01 is the end of DST in New York: 23:45 local is 04:45 UTC after it.
    got = schedule.next_daily(ts("2026-10-31T23:50:00"), "11:45 PM", NY)
    assert dt.datetime.fromtimestamp(got, dt.UTC).hour == 4


def test_weekly_full_login_is_sundays_cold_restart_else_the_first_sunday_restart() -> None:
    friday = ts("2026-12-04T12:00:00")  # a Friday
    assert schedule.next_weekly_login(friday, "07:05", "11:45 PM", NY) == ts("2026-12-06T07:05:00")
    assert schedule.next_weekly_login(friday, "", "11:45 PM", NY) == ts("2026-12-06T23:45:00")
    sunday_late = ts("2026-12-06T08:00:00")
    assert schedule.next_weekly_login(sunday_late, "07:05", "", NY) == ts("2026-12-13T07:05:00")
    assert schedule.next_weekly_login(friday, "", "", NY) == 0.0


def test_ibc_restart_command_time_is_the_next_minute() -> None:
    now = ts("2026-12-04T10:15:20", "UTC")
    assert schedule.next_minute(now) == ts("2026-12-04T10:16:00", "UTC")
    late = ts("2026-12-04T10:15:58.5", "UTC")  # RestartTask waits while second >= 58
    assert schedule.next_minute(late) == ts("2026-12-04T10:17:00", "UTC")
    assert schedule.reply_time(now, "10:16 AM", "UTC") == ts("2026-12-04T10:16:00", "UTC")
    assert schedule.reply_time(now, "not a time", "UTC") == 0.0
    assert schedule.time12_at(ts("2026-12-04T22:46:00"), NY) == "10:46 PM"


def test_planned_restarts_include_one_that_just_began() -> None:
    class S:
        auto_restart_time = "11:45 PM"
        auto_logoff_time = ""
        cold_restart_time = "07:05"
        time_zone = NY

    wall = ts("2026-12-06T23:46:00")  # a Sunday, a minute after the daily restart
    got = lifecycle.planned(S(), wall, 1000.0)  # type: ignore[arg-type]
    assert (1000.0 - 60.0, "daily restart") in got
    assert all(reason in ("daily restart", "cold restart") for _, reason in got)


def gw(state: State, **kw: object) -> GatewayStatus:
    base = GatewayStatus("paper", state, 4002, 4004, False, 0.0, 0.0, 0.0, 0, 0, 0)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (
            gw(State.WAITING_2FA, twofa_deadline_timestamp=1130.0),
            "waiting for 2FA approval, 2 min 10 s left",
        ),
        (gw(State.RESTARTING, restart_reason="daily restart"), "restarting (daily restart)"),
        (
            gw(State.READY, read_only_api=True),
            "ready (read-only API): API live on 4002, relay on 4004",
        ),
        (
            gw(State.READY, soft_restart_timestamp=1035.0),
            "ready: API live on 4002, relay on 4004; soft restart in 35 s",
        ),
        (
            gw(
                State.LOGIN_FAILED,
                login_failed_reason="login failed: check TWS_USERID / "
                "TWS_PASSWORD for the paper gateway",
            ),
            "login failed: check TWS_USERID / TWS_PASSWORD for the paper gateway",
        ),
        (gw(State.SELECT_2FA_DEVICE), "waiting for the 2FA device to be chosen"),
    ],
)
def test_status_text(status: GatewayStatus, text: str) -> None:
    assert lifecycle.gateway_text(status, 1000.0) == text


def test_expired_2fa_text_says_what_happens_next_and_when() -> None:
    g = gw(
        State.EXPIRED_2FA,
        detail="2FA prompt expired; IBC waits, ibgwd starts a new login after LOGIN_TIMEOUT",
    )
    assert lifecycle.gateway_text(g, 1000.0, 1300.0) == (
        "2FA prompt expired: IBC waits; ibgwd starts a new login (a new 2FA prompt) in 5 min"
    )


def test_tokens_and_cold_restart_flags_are_removed_from_the_settings_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "abcdef").mkdir()
    (tmp_path / "abcdef" / "autorestart").write_text("")
    (tmp_path / "COLDRESTART42").write_text("")
    (tmp_path / "jts.ini").write_text("")
    assert lifecycle.remove_tokens(str(tmp_path)) == [str(tmp_path / "abcdef" / "autorestart")]
    assert lifecycle.remove_cold_restart_flags(str(tmp_path)) == [str(tmp_path / "COLDRESTART42")]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["abcdef", "jts.ini"]


def test_budget_file_is_written_atomically_and_bad_content_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state" / budget.FILE_NAME
    assert budget.load(path) == {}
    budget.save(path, {"paper": {"recoveries": [1.0], "login_failures": 1}})
    assert budget.load(path) == {"paper": {"recoveries": [1.0], "login_failures": 1}}
    assert [p.name for p in path.parent.iterdir()] == [budget.FILE_NAME]  # no temp file left
    path.write_text("{not json")
    assert budget.load(path) == {}


def test_a_failed_login_names_the_settings_the_credentials_came_from(tmp_path: Path) -> None:
    from settings_samples import BASE_ENV, DUAL_ENV, load

    from ibgwd.config.model import Mode
    from ibgwd.supervisor.health import login_failed_text

    single = load(BASE_ENV | {"TRADING_MODE": "paper"}, tmp_path).gateway(Mode.PAPER)
    assert login_failed_text("paper", single.credentials.source) == (
        "login failed: check TWS_USERID / TWS_PASSWORD for the paper gateway"
    )
    dual = load(DUAL_ENV, tmp_path)
    assert dual.gateway(Mode.PAPER).credentials.source == "TWS_USERID_PAPER / TWS_PASSWORD_PAPER"
    assert dual.gateway(Mode.LIVE).credentials.source == "TWS_USERID / TWS_PASSWORD"
    assert "live-pass" not in repr(dual)
