"""The ibgwd error hierarchy, each error mapped to an exit code and a D-Bus error name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EX_OK = 0
EX_USAGE = 64
EX_SOFTWARE = 70
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class IbgwdError(Exception):
    """Base of every error ibgwd raises on purpose. Messages never contain secrets."""

    exit_code = EX_SOFTWARE
    dbus_name = "Failed"


@dataclass(frozen=True)
class Problem:
    """One invalid setting: its name, the bad value (redacted for secrets), what is accepted."""

    setting: str
    value: str
    accepted: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.setting}: invalid value {self.value!r}; accepted: {self.accepted}"
        return f"{text} ({self.detail})" if self.detail else text


class ConfigError(IbgwdError):
    """Settings are invalid; carries every problem found, not just the first."""

    exit_code = EX_CONFIG
    dbus_name = "InvalidConfiguration"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class CredentialError(ConfigError):
    """A secret is missing or its file cannot be read."""

    dbus_name = "CredentialError"


class UnitError(IbgwdError):
    """systemd refused or failed a unit operation."""

    exit_code = EX_UNAVAILABLE
    dbus_name = "UnitError"


class NotReadyError(IbgwdError):
    """The requested action needs a running gateway."""

    exit_code = EX_TEMPFAIL
    dbus_name = "NotReady"


class CommandError(IbgwdError):
    """IBC's command server refused or did not answer."""

    exit_code = EX_UNAVAILABLE
    dbus_name = "CommandFailed"


class RateLimitedError(IbgwdError):
    """Recovery or restart refused by the rate limiter."""

    exit_code = EX_TEMPFAIL
    dbus_name = "RateLimited"


class InstallError(IbgwdError):
    """install-gateway failed; nothing half-installed is left behind."""

    exit_code = EX_SOFTWARE
    dbus_name = "InstallFailed"
