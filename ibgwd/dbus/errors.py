"""Map every exception that can reach the bus to a named D-Bus error, never `not.known.Error`."""

from __future__ import annotations

from dasbus.error import AbstractErrorRule, DBusError, ErrorMapper, ErrorRule

from ibgwd.errors import IbgwdError
from ibgwd.names import ERROR_NAMESPACE

ERROR_PREFIX = ".".join(ERROR_NAMESPACE)
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
FAILED = f"{ERROR_PREFIX}.{IbgwdError.dbus_name}"


class AccessDeniedError(DBusError):  # type: ignore[misc]
    """The caller may not do this; replied as org.freedesktop.DBus.Error.AccessDenied."""


class InvalidArgumentError(DBusError):  # type: ignore[misc]
    """A method argument is out of range; replied as org.freedesktop.DBus.Error.InvalidArgs.

    The message names the argument, the bad value and what is accepted.
    """

    def __init__(self, argument: str, value: str, accepted: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: invalid value {value!r}; accepted: {accepted}")


def ibgwd_error_name(exception_type: type[BaseException]) -> str:
    """The D-Bus error name of an ibgwd error class, e.g. org.ibgwd.Gateway1.Error.NotReady."""
    if issubclass(exception_type, IbgwdError):
        return f"{ERROR_PREFIX}.{exception_type.dbus_name}"
    return FAILED


class _IbgwdErrorRule(AbstractErrorRule):  # type: ignore[misc]
    """Every IbgwdError subclass, present and future, by its `dbus_name` attribute.

    Server-side only: it never turns a name back into an IbgwdError (their constructors take
    structured arguments), so clients see dasbus's DBusError with a `dbus_name` attribute.
    """

    __slots__: list[str] = []

    def match_type(self, exception_type: type[BaseException]) -> bool:
        return issubclass(exception_type, IbgwdError)

    def get_name(self, exception_type: type[BaseException]) -> str:
        return ibgwd_error_name(exception_type)

    def match_name(self, error_name: str) -> bool:
        return False

    def get_type(self, error_name: str) -> type[BaseException]:
        raise LookupError(error_name)


class _FallbackRule(AbstractErrorRule):  # type: ignore[misc]
    """Anything unexpected (a bug) is org.ibgwd.Gateway1.Error.Failed instead of not.known.Error."""

    __slots__: list[str] = []

    def match_type(self, exception_type: type[BaseException]) -> bool:
        return True

    def get_name(self, exception_type: type[BaseException]) -> str:
        return FAILED

    def match_name(self, error_name: str) -> bool:
        return True

    def get_type(self, error_name: str) -> type[BaseException]:
        return DBusError  # type: ignore[no-any-return]


def make_error_mapper() -> ErrorMapper:
    """An ErrorMapper with ibgwd's rules (later rules win, as in dasbus)."""
    mapper = ErrorMapper()
    mapper.add_rule(_FallbackRule())
    mapper.add_rule(_IbgwdErrorRule())
    mapper.add_rule(ErrorRule(exception_type=AccessDeniedError, error_name=ACCESS_DENIED))
    mapper.add_rule(ErrorRule(exception_type=InvalidArgumentError, error_name=INVALID_ARGS))
    return mapper


def is_expected(error: BaseException) -> bool:
    """True for errors whose message is part of the contract (safe to send, no traceback needed)."""
    return isinstance(error, IbgwdError | AccessDeniedError | InvalidArgumentError)


def reply_message(error: BaseException) -> str:
    """The text sent with the D-Bus error.

    Expected errors carry their own message (the hierarchy guarantees no secrets); anything
    else is a bug whose text could hold anything, so only its class name leaves the process.
    """
    if is_expected(error):
        return str(error)
    return f"internal error ({type(error).__name__}); see the daemon's journal"
