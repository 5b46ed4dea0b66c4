"""Pure schedule of the Gateway's own restarts: the daily token restart and the weekly full login.

- Daily: IBC `AutoRestartTime` (`hh:mm AM|PM`, local time of TIME_ZONE). ibgwd always renders
  it; empty AUTO_RESTART_TIME means the Gateway's own default, 11:45 PM — unless
  AUTO_LOGOFF_TIME is set, which the Gateway then does instead (IBC ignores AutoLogoffTime
  when AutoRestartTime is set, `IbcTws.java:588-595`), so there is no daily restart.
- Weekly: IBC `ColdRestartTime` (`HH:mm`, Sundays, `IbcTws.java:347-380`) is a cold restart
  with a full login. Without it, IB asks for a full login once a week anyway: the first daily
  restart on a Sunday is the estimate ibgwd reports then.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibgwd.config.model import Settings

GATEWAY_DEFAULT_RESTART = "11:45 PM"  # the Gateway's own Lock-and-Exit default
SUNDAY = 6  # datetime.weekday()


def effective_restart_time(auto_restart_time: str, auto_logoff_time: str) -> str:
    """The AutoRestartTime ibgwd renders: the setting, else the Gateway's default (no logoff)."""
    if auto_restart_time:
        return auto_restart_time
    return "" if auto_logoff_time else GATEWAY_DEFAULT_RESTART


def settings_restart_time(settings: Settings) -> str:
    return effective_restart_time(settings.auto_restart_time, settings.auto_logoff_time)


def parse_time12(text: str) -> dt.time:
    """`hh:mm AM|PM` (IBC's `hh:mm a`)."""
    return dt.datetime.strptime(text.strip().upper(), "%I:%M %p").time()


def format_time12(t: dt.time) -> str:
    return dt.time(t.hour, t.minute).strftime("%I:%M %p")


def time12_at(ts: float, tz_name: str) -> str:
    """`10:46 PM`: Unix time `ts` in the Gateway's time zone."""
    return format_time12(dt.datetime.fromtimestamp(ts, zone(tz_name)).time())


def parse_time24(text: str) -> dt.time:
    return dt.datetime.strptime(text.strip(), "%H:%M").time()


def zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name or "Etc/UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _at(day: dt.date, t: dt.time, tz: dt.tzinfo) -> float:
    return dt.datetime.combine(day, dt.time(t.hour, t.minute), tzinfo=tz).timestamp()


def next_daily(now: float, time12: str, tz_name: str) -> float:
    """Unix time of the next daily restart at `time12` strictly after `now`; 0 = none."""
    if not time12:
        return 0.0
    tz = zone(tz_name)
    t = parse_time12(time12)
    today = dt.datetime.fromtimestamp(now, tz).date()
    for offset in range(3):
        when = _at(today + dt.timedelta(days=offset), t, tz)
        if when > now:
            return when
    return 0.0  # pragma: no cover (three days always contain the next occurrence)


def next_sunday_at(now: float, t: dt.time, tz_name: str) -> float:
    tz = zone(tz_name)
    today = dt.datetime.fromtimestamp(now, tz).date()
    for offset in range(9):
        day = today + dt.timedelta(days=offset)
        if day.weekday() == SUNDAY:
            when = _at(day, t, tz)
            if when > now:
                return when
    return 0.0  # pragma: no cover


def next_weekly_login(now: float, cold_time24: str, daily_time12: str, tz_name: str) -> float:
    """Unix time of the next full login (2FA) the Gateway's schedule asks for; 0 = unknown."""
    if cold_time24:
        return next_sunday_at(now, parse_time24(cold_time24), tz_name)
    if daily_time12:
        return next_sunday_at(now, parse_time12(daily_time12), tz_name)
    return 0.0


def next_minute(now: float) -> float:
    """IBC's RESTART command: the restart happens at the start of the next minute
    (RestartTask.java:101-115; it waits while the second is >= 58)."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    if t.second >= 58:
        t += dt.timedelta(seconds=2)
    return (t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)).timestamp()


def reply_time(now: float, hhmm_ampm: str, tz_name: str) -> float:
    """Unix time of IBC's `OK RESTART at hh:mm AM` (the next occurrence of that minute)."""
    try:
        return next_daily(now - 60.0, hhmm_ampm, tz_name)
    except ValueError:
        return 0.0


def is_sunday(ts: float, tz_name: str) -> bool:
    return dt.datetime.fromtimestamp(ts, zone(tz_name)).weekday() == SUNDAY
