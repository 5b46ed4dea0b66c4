"""The supervisor's lifecycle helpers: the Gateway's schedule as health sees it, the files IBC's
launcher reads (autorestart token, COLDRESTART flag) and the status text of one gateway.

Pure functions except the two `remove_*` helpers, which touch only the Gateway's settings
directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ibgwd import schedule
from ibgwd.config.model import Settings
from ibgwd.status import GatewayStatus, State
from ibgwd.supervisor.health import COLD, DAILY, LOGOFF

log = logging.getLogger(__name__)

# A restart counts as "planned" from this long before its time (the schedule is looked up
# with this much hindsight, so a restart that just began still matches).
PLANNED_LOOKBEHIND_S = 300.0


def next_restarts(settings: Settings, wall_now: float) -> tuple[float, float]:
    """(next daily restart, next weekly full login), Unix seconds, 0 = none."""
    daily = schedule.settings_restart_time(settings)
    return (
        schedule.next_daily(wall_now, daily, settings.time_zone),
        schedule.next_weekly_login(wall_now, settings.cold_restart_time, daily, settings.time_zone),
    )


def planned(settings: Settings, wall_now: float, mono_now: float) -> tuple[tuple[float, str], ...]:
    """The Gateway's scheduled restarts near now, as (monotonic time, reason), for health."""
    since = wall_now - PLANNED_LOOKBEHIND_S
    daily = schedule.settings_restart_time(settings)
    out: list[tuple[float, str]] = []
    if settings.cold_restart_time:
        cold = schedule.next_sunday_at(
            since, schedule.parse_time24(settings.cold_restart_time), settings.time_zone
        )
        out.append((mono_now + cold - wall_now, COLD))
    if daily:
        when = schedule.next_daily(since, daily, settings.time_zone)
        out.append((mono_now + when - wall_now, DAILY))
    elif settings.auto_logoff_time:
        when = schedule.next_daily(since, settings.auto_logoff_time, settings.time_zone)
        out.append((mono_now + when - wall_now, LOGOFF))
    return tuple(sorted(out))


def _settings_dir(settings_path: str) -> Path:
    return Path(settings_path)


def remove_tokens(settings_path: str) -> list[str]:
    """Delete `<settings>/*/autorestart` (the Gateway's one-shot restart token); returns them.

    A token present when a login stalls is stale (IBC issue 235): IBC then skips the login and
    the Gateway waits forever; the next start without it is a full login."""
    removed = []
    for token in sorted(_settings_dir(settings_path).glob("*/autorestart")):
        try:
            token.unlink()
            removed.append(str(token))
        except OSError as exc:
            log.warning("event=token_not_removed path=%s error=%s", token, exc)
    return removed


def remove_cold_restart_flags(settings_path: str) -> list[str]:
    """Delete `<settings>/COLDRESTART*`, so IBC's launcher does not relaunch the Gateway for
    another login (ibcstart.sh l.545-548 checks it after the JVM exited, even after SIGTERM)."""
    removed = []
    for flag in sorted(_settings_dir(settings_path).glob("COLDRESTART*")):
        try:
            flag.unlink()
            removed.append(str(flag))
        except OSError as exc:
            log.warning("event=flag_not_removed path=%s error=%s", flag, exc)
    return removed


def duration_text(seconds: float) -> str:
    """`2 min 10 s`, `45 s`, `3 h 5 min`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, s = divmod(s, 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, rest = divmod(s, 3600)
    m = rest // 60
    return f"{h} h {m} min" if m else f"{h} h"


WORDS = {
    State.STARTING: "starting",
    State.LOGGING_IN: "waiting for login",
    State.WAITING_2FA: "waiting for 2FA approval",
    State.SELECT_2FA_DEVICE: "waiting for the 2FA device to be chosen",
    State.EXPIRED_2FA: "2FA prompt expired",
    State.RESTARTING: "restarting",
    State.DEGRADED: "API not answering",
    State.RECOVERING: "recovering",
    State.RATE_LIMITED: "recovery rate limit reached",
    State.FAILED: "failed",
    State.STOPPING: "stopping",
}


def gateway_text(g: GatewayStatus, wall_now: float, next_attempt_wall: float = 0.0) -> str:
    """One gateway's status line (systemd STATUS=, D-Bus StatusText)."""
    if g.state is State.READY:
        ro = " (read-only API)" if g.read_only_api else ""
        relay = f", relay on {g.relay_port}" if g.relay_port else ""
        text = f"ready{ro}: API live on {g.api_port}{relay}"
        if g.soft_restart_timestamp > wall_now:
            text += f"; soft restart in {duration_text(g.soft_restart_timestamp - wall_now)}"
        return text
    if g.state is State.LOGIN_FAILED:
        return g.login_failed_reason or g.detail
    if g.state is State.RESTARTING:
        return f"restarting ({g.restart_reason or g.detail})"
    if g.state is State.WAITING_2FA and g.twofa_deadline_timestamp:
        remaining = g.twofa_deadline_timestamp - wall_now
        if remaining > 0:
            return f"waiting for 2FA approval, {duration_text(remaining)} left"
        return "waiting for 2FA approval (the prompt has expired)"
    text = WORDS.get(g.state, g.state.value)
    if g.state is State.EXPIRED_2FA:
        detail = g.detail
        if next_attempt_wall > wall_now and "LOGIN_TIMEOUT" in detail:
            detail = "IBC waits; ibgwd starts a new login (a new 2FA prompt) in " + duration_text(
                next_attempt_wall - wall_now
            )
        return f"{text}: {detail}" if detail else text
    plain = not g.detail or g.detail == text or g.state is State.LOGGING_IN
    return text if plain else f"{text} ({g.detail})"
