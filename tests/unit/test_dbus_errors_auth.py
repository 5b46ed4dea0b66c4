"""Error names on the bus and the Unix-group authorizer, without a bus."""

from __future__ import annotations

import pytest

import ibgwd.dbus.server  # noqa: F401  (registers BusNameError among the subclasses)
from ibgwd.dbus.auth import ACTION_MANAGE, UnixGroupAuthorizer, UnixUser
from ibgwd.dbus.errors import (
    AccessDeniedError,
    InvalidArgumentError,
    make_error_mapper,
    reply_message,
)
from ibgwd.errors import ConfigError, IbgwdError, NotReadyError, Problem


def all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(all_subclasses(sub))
    return found


ERRORS = [IbgwdError, *all_subclasses(IbgwdError)]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_ibgwd_error_has_its_own_named_dbus_error(error: type[IbgwdError]) -> None:
    name = make_error_mapper().get_error_name(error)
    assert name == f"org.ibgwd.Gateway1.Error.{error.dbus_name}"


def test_distinct_ibgwd_errors_get_distinct_names() -> None:
    names = [make_error_mapper().get_error_name(e) for e in ERRORS]
    assert len(set(names)) == len(names)


def test_config_error_is_invalid_configuration() -> None:
    assert (
        make_error_mapper().get_error_name(ConfigError)
        == "org.ibgwd.Gateway1.Error.InvalidConfiguration"
    )


def test_access_denied_is_the_standard_dbus_error() -> None:
    mapper = make_error_mapper()
    assert mapper.get_error_name(AccessDeniedError) == "org.freedesktop.DBus.Error.AccessDenied"
    assert mapper.get_error_name(InvalidArgumentError) == "org.freedesktop.DBus.Error.InvalidArgs"


@pytest.mark.parametrize("error", [ValueError, KeyError, RuntimeError, OSError, Exception])
def test_unexpected_exceptions_are_failed_never_not_known(error: type[Exception]) -> None:
    name = make_error_mapper().get_error_name(error)
    assert name == "org.ibgwd.Gateway1.Error.Failed"
    assert not name.startswith("not.known")


def test_unexpected_exception_text_never_leaves_the_process() -> None:
    message = reply_message(RuntimeError("password=hunter2 in some traceback"))
    assert "hunter2" not in message
    assert "RuntimeError" in message


def test_expected_error_message_is_sent_as_is() -> None:
    error = ConfigError([Problem("TRADING_MODE", "bogus", "live, paper or both")])
    assert (
        reply_message(error) == "TRADING_MODE: invalid value 'bogus'; accepted: live, paper or both"
    )
    assert reply_message(NotReadyError("no live gateway")) == "no live gateway"


class FakeUsers:
    def __init__(self) -> None:
        self.users = {
            1000: UnixUser(1000, "alice", 1000),  # outsider
            1001: UnixUser(1001, "bob", 1001),  # supplementary member
            1002: UnixUser(1002, "carol", 990),  # primary group is ibgwd
        }
        self.groups = {"ibgwd": (990, frozenset({"bob"}))}

    def user(self, uid: int) -> UnixUser | None:
        return self.users.get(uid)

    def group(self, name: str) -> tuple[int, frozenset[str]] | None:
        return self.groups.get(name)


def authorizer_for(uid: int | Exception, users: FakeUsers | None = None) -> UnixGroupAuthorizer:
    def uid_of(sender: str) -> int:
        if isinstance(uid, Exception):
            raise uid
        return uid

    return UnixGroupAuthorizer(uid_of, users=users or FakeUsers())


@pytest.mark.parametrize(
    ("uid", "allowed"),
    [(0, True), (1001, True), (1002, True), (1000, False), (4242, False)],
    ids=["root", "supplementary-member", "primary-member", "outsider", "unknown-uid"],
)
def test_unix_group_authorizer_allows_root_and_group_members(uid: int, allowed: bool) -> None:
    assert authorizer_for(uid).is_authorized(":1.7", ACTION_MANAGE) is allowed


def test_missing_admin_group_denies_everyone_but_root() -> None:
    users = FakeUsers()
    users.groups.clear()
    assert not authorizer_for(1001, users).is_authorized(":1.7", ACTION_MANAGE)
    assert authorizer_for(0, users).is_authorized(":1.7", ACTION_MANAGE)


def test_failed_uid_lookup_denies() -> None:
    error = RuntimeError("GDBus.Error:org.freedesktop.DBus.Error.NameHasNoOwner")
    assert not authorizer_for(error).is_authorized(":1.9", ACTION_MANAGE)
