"""IBC's view of config.ini: typed lookups, the masked "IBC Settings:" dump, schedule parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

MASKED = frozenset({"IbLoginId", "IbPassword", "FIXLoginId", "FIXPassword"})
_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_HHMM_AMPM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*([AaPp][Mm])\s*$")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SettingError(ValueError):
    """An invalid value; IBC exits 81 (or 80 for TradingMode)."""


@dataclass(frozen=True)
class IbcSettings:
    values: dict[str, str]

    def get(self, key: str, default: str = "") -> str:
        value = self.values.get(key, "").strip()
        return value or default

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.get(key).lower()
        if value in ("yes", "true"):
            return True
        if value in ("no", "false"):
            return False
        return default

    def get_int(self, key: str, default: int) -> int:
        try:
            return int(self.get(key))
        except ValueError:
            return default

    def dump(self) -> list[str]:
        """The "IBC Settings:" block with credentials masked."""
        return [
            f"    {k}={'***' if k in MASKED and v else v}" for k, v in sorted(self.values.items())
        ]


def trading_mode(value: str) -> str:
    mode = value.strip().lower()
    aliases = {"live": "live", "livetrading": "live", "paper": "paper", "papertrading": "paper"}
    if mode not in aliases:
        raise SettingError(f"Invalid Trading mode: {value}; should be 'live' or 'paper'")
    return aliases[mode]


def next_cold_restart(value: str, now: datetime) -> datetime:
    """ColdRestartTime ``hh:mm``: the next Sunday at that time."""
    m = _HHMM.match(value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise SettingError(
            f"Invalid ColdRestartTime setting: '{value}'; format should be: <hh:mm>   eg 13:00"
        )
    at = now.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
    at += timedelta(days=(6 - at.weekday()) % 7)
    return at if at > now else at + timedelta(days=7)


def next_closedown(value: str, now: datetime) -> datetime:
    """ClosedownAt ``[Day ]hh:mm``: daily without a day, weekly with one."""
    parts = value.split()
    day = parts[0].lower() if len(parts) == 2 else None
    m = _HHMM.match(parts[-1]) if parts else None
    days = [d for d in _DAYS if day and len(day) >= 3 and d.startswith(day)]
    if not m or int(m.group(1)) > 23 or (day is not None and len(days) != 1) or len(parts) > 2:
        raise SettingError(
            f"Invalid ClosedownAt setting: '{value}'; format should be: <[day ]hh:mm>   "
            "eg 22:00 or Friday 22:00"
        )
    at = now.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
    if days:
        at += timedelta(days=(_DAYS.index(days[0]) - at.weekday()) % 7)
        return at if at > now else at + timedelta(days=7)
    return at if at > now else at + timedelta(days=1)


def next_clock_time(value: str, now: datetime) -> datetime | None:
    """AutoRestartTime/AutoLogoffTime ``hh:mm AM|PM``: the next occurrence, None if invalid."""
    m = _HHMM_AMPM.match(value)
    if not m or not 1 <= int(m.group(1)) <= 12 or int(m.group(2)) > 59:
        return None
    hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
    at = now.replace(hour=hour, minute=int(m.group(2)), second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)
