"""Authorization of D-Bus method calls: who may manage ibgwd, and the decorators that enforce it.

Secure by default (firewalld's `DbusServiceObject` pattern): `secure_by_default` wraps every
exported method of an interface class that has no explicit decision with a deny-all, so a
forgotten decorator refuses the call instead of allowing it.
"""

from __future__ import annotations

import functools
import grp
import logging
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from dasbus.server.interface import accepts_additional_arguments
from dasbus.specification import DBusSpecification

from ibgwd.dbus.errors import AccessDeniedError
from ibgwd.names import ADMIN_GROUP, BUS_NAME_PREFIX

log = logging.getLogger(__name__)

ACTION_MANAGE = f"{BUS_NAME_PREFIX}.manage"  # polkit-style action id of every mutating method
DENY_ALL = "deny"  # the decision `secure_by_default` gives a method that declared none
AUTHORIZATION_ATTRIBUTE = "__ibgwd_authorization__"
UID_LOOKUP_TIMEOUT_MS = 5000
STANDARD_INTERFACE_PREFIX = "org.freedesktop.DBus."

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


class Authorizer(Protocol):
    """Decides whether the bus connection `sender` (a unique name like ":1.42") may do `action`."""

    def is_authorized(self, sender: str, action: str) -> bool: ...


class HasAuthorizer(Protocol):
    """An interface object whose methods are guarded by `requires_authorization`."""

    @property
    def authorizer(self) -> Authorizer: ...


@dataclass(frozen=True)
class UnixUser:
    """What the user database says about one uid."""

    uid: int
    name: str
    primary_gid: int


class UserDatabase(Protocol):
    """The parts of pwd/grp the authorizer needs (a port, so tests can hand in a fake)."""

    def user(self, uid: int) -> UnixUser | None: ...

    def group(self, name: str) -> tuple[int, frozenset[str]] | None:
        """(gid, member user names) of a group, or None if it does not exist."""


class SystemUserDatabase:
    """UserDatabase over the pwd and grp modules (NSS)."""

    def user(self, uid: int) -> UnixUser | None:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return None
        return UnixUser(uid=uid, name=entry.pw_name, primary_gid=entry.pw_gid)

    def group(self, name: str) -> tuple[int, frozenset[str]] | None:
        try:
            entry = grp.getgrnam(name)
        except KeyError:
            return None
        return entry.gr_gid, frozenset(entry.gr_mem)


def bus_uid_lookup(bus: Any) -> Callable[[str], int]:
    """Ask the bus daemon for the uid behind a unique connection name (GetConnectionUnixUser)."""

    def uid_of(sender: str) -> int:
        return int(bus.proxy.GetConnectionUnixUser(sender, timeout=UID_LOOKUP_TIMEOUT_MS))

    return uid_of


class UnixGroupAuthorizer:
    """Allows uid 0 and members of the admin group (primary or supplementary); denies the rest.

    This is the application-level check behind the bus policy, which already refuses method
    calls from others; both must agree for a call to run.
    """

    def __init__(
        self,
        uid_of: Callable[[str], int],
        group: str = ADMIN_GROUP,
        users: UserDatabase | None = None,
    ) -> None:
        self._uid_of = uid_of
        self._group = group
        self._users: UserDatabase = users if users is not None else SystemUserDatabase()

    def is_authorized(self, sender: str, action: str) -> bool:
        try:
            uid = self._uid_of(sender)
        except Exception as exc:  # a vanished sender or a bus error: deny, never raise
            log.warning("authorization failed sender=%s action=%s error=%s", sender, action, exc)
            return False
        allowed = self._uid_allowed(uid)
        log.info(
            "authorization sender=%s uid=%d action=%s decision=%s",
            sender,
            uid,
            action,
            "allow" if allowed else "deny",
        )
        return allowed

    def _uid_allowed(self, uid: int) -> bool:
        if uid == 0:
            return True
        user = self._users.user(uid)
        group = self._users.group(self._group)
        if user is None or group is None:
            return False
        gid, members = group
        return user.primary_gid == gid or user.name in members


def authorization_of(method: Callable[..., Any]) -> str | None:
    """The authorization decision attached to a method (an action id or DENY_ALL), or None."""
    decision = getattr(method, AUTHORIZATION_ATTRIBUTE, None)
    return decision if isinstance(decision, str) else None


def requires_authorization(action: str = ACTION_MANAGE) -> Callable[[F], F]:
    """Guard a D-Bus method: the caller must be authorized for `action`, or AccessDenied."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: HasAuthorizer, *args: Any, call_info: dict[str, Any]) -> Any:
            sender = call_info.get("sender")
            if not sender or not self.authorizer.is_authorized(str(sender), action):
                raise AccessDeniedError(
                    f"{method.__name__} needs authorization for {action}: "
                    f"only root and members of group {ADMIN_GROUP} may call it"
                )
            return method(self, *args)

        setattr(guarded, AUTHORIZATION_ATTRIBUTE, action)
        return accepts_additional_arguments(guarded)  # type: ignore[no-any-return]

    return decorate


def _deny_all(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def denied(self: object, *args: Any, **kwargs: Any) -> Any:
        log.warning("denied call to %s: it has no authorization decision", method.__name__)
        raise AccessDeniedError(f"{method.__name__} is not available: no authorization decision")

    setattr(denied, AUTHORIZATION_ATTRIBUTE, DENY_ALL)
    return denied


def exported_methods(cls: type) -> list[str]:
    """Names of the methods a dasbus interface class exports on the bus (its own interfaces)."""
    spec = DBusSpecification.from_xml(cls.__dbus_xml__)  # type: ignore[attr-defined]
    return sorted(
        member.name
        for member in spec.members
        if isinstance(member, DBusSpecification.Method)
        and not member.interface_name.startswith(STANDARD_INTERFACE_PREFIX)
    )


def secure_by_default(cls: C) -> C:
    """Class decorator (apply outside @dbus_interface): deny every undecided exported method."""
    for name in exported_methods(cls):
        method = getattr(cls, name)
        if authorization_of(method) is None:
            setattr(cls, name, _deny_all(method))
    return cls
