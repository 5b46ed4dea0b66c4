"""The simulation switches: parse ``simulation.conf`` (KEY=VALUE) into a frozen SimConfig."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

FILE_NAME = "simulation.conf"
_E = TypeVar("_E", bound=enum.Enum)


class Scenario(enum.Enum):
    OK = "ok"
    TWOFA_PENDING = "twofa_pending"
    TWOFA_TIMEOUT = "twofa_timeout"
    LOGIN_FAILED = "login_failed"
    NO_LOGIN_DIALOG = "no_login_dialog"
    STALL_AFTER_START = "stall_after_start"
    API_ZOMBIE = "api_zombie"
    API_SLOW = "api_slow"
    CRASH_AFTER = "crash_after"
    EXISTING_SESSION = "existing_session"
    AUTORESTART_REJECTED = "autorestart_rejected"
    STALE_TOKEN = "stale_token"


class TwoFactorFor(enum.Enum):
    NONE = "none"
    LIVE = "live"
    PAPER = "paper"
    BOTH = "both"

    def applies_to(self, mode: str) -> bool:
        return self is TwoFactorFor.BOTH or self.value == mode


@dataclass(frozen=True)
class SimConfig:
    scenario: Scenario = Scenario.OK
    accept_user: str = ""
    accept_password: str = ""
    login_s: float = 1.0
    startup_s: float = 3.0  # JVM launch -> login dialog shown (class loading, Swing)
    two_factor_for: TwoFactorFor = TwoFactorFor.NONE
    api_delay_s: float = 5.0
    crash_after_s: float = 5.0
    accounts: tuple[str, ...] = ("DU1234567",)
    restart_delay_s: float | None = None  # None: IBC's next wall-clock minute
    twofa_dialog_s: float = 185.0  # IB closes an unanswered 2FA prompt (twofa_timeout)
    shutdown_s: float = 8.0  # "Shutdown progress" open -> JVM exit (observed 5-15 s)
    clock_offset_s: float = 0.0  # added to the wall clock the simulated Gateway sees
    clock_weekday: int | None = None  # 0 = Monday: the day of the week the clock reports
    second_factor_devices: tuple[str, ...] = ()  # two or more: the dialog asks for one


class SimConfigError(ValueError):
    """A bad line in simulation.conf; the message names the key, value and what is accepted."""


def _number(key: str, value: str) -> float:
    try:
        result = float(value)
    except ValueError:
        result = -1.0
    if result < 0:
        raise SimConfigError(f"{key}={value!r}: expected a number of seconds >= 0")
    return result


def _signed(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SimConfigError(f"{key}={value!r}: expected a number of seconds") from None


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(key: str, value: str) -> int:
    try:
        return WEEKDAYS.index(value.lower())
    except ValueError:
        raise SimConfigError(f"{key}={value!r}: expected one of {' | '.join(WEEKDAYS)}") from None


def _enum(cls: type[_E], key: str, value: str) -> _E:
    try:
        return cls(value.lower())
    except ValueError:
        accepted = " | ".join(str(m.value) for m in cls)
        raise SimConfigError(f"{key}={value!r}: expected one of {accepted}") from None


def parse_sim_conf(text: str) -> SimConfig:
    """Keys are case-insensitive; blank lines and lines starting with # are ignored."""
    fields: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise SimConfigError(f"line {number}: expected KEY=VALUE, got {raw!r}")
        if key == "scenario":
            fields["scenario"] = _enum(Scenario, "Scenario", value)
        elif key == "acceptuser":
            fields["accept_user"] = value
        elif key == "acceptpassword":
            fields["accept_password"] = value
        elif key == "startupseconds":
            fields["startup_s"] = _number("StartupSeconds", value)
        elif key == "loginseconds":
            fields["login_s"] = _number("LoginSeconds", value)
        elif key == "twofactorfor":
            fields["two_factor_for"] = _enum(TwoFactorFor, "TwoFactorFor", value)
        elif key == "apidelayseconds":
            fields["api_delay_s"] = _number("ApiDelaySeconds", value)
        elif key == "crashafterseconds":
            fields["crash_after_s"] = _number("CrashAfterSeconds", value)
        elif key == "accounts":
            fields["accounts"] = tuple(a.strip() for a in value.split(",") if a.strip())
        elif key == "restartdelayseconds":
            fields["restart_delay_s"] = _number("RestartDelaySeconds", value)
        elif key == "twofactordialogseconds":
            fields["twofa_dialog_s"] = _number("TwoFactorDialogSeconds", value)
        elif key == "shutdownseconds":
            fields["shutdown_s"] = _number("ShutdownSeconds", value)
        elif key == "clockoffsetseconds":
            fields["clock_offset_s"] = _signed("ClockOffsetSeconds", value)
        elif key == "clockweekday":
            fields["clock_weekday"] = _weekday("ClockWeekday", value)
        elif key == "secondfactordevices":
            fields["second_factor_devices"] = tuple(
                d.strip() for d in value.split(",") if d.strip()
            )
        else:
            raise SimConfigError(f"line {number}: unknown key {key!r}")
    return replace(SimConfig(), **fields)


def load_sim_conf(ibc_path: Path) -> SimConfig:
    """The configuration in ``<ibc_path>/simulation.conf``; defaults when it is missing."""
    try:
        text = (ibc_path / FILE_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return SimConfig()
    return parse_sim_conf(text)
