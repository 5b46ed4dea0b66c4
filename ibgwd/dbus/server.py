"""Put one instance's Manager object on a bus: publish, own the name, forward status changes."""

from __future__ import annotations

import logging
from typing import Any

from dasbus.constants import DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
from dasbus.server.handler import ServerObjectHandler

from ibgwd.dbus.auth import Authorizer
from ibgwd.dbus.errors import is_expected, make_error_mapper, reply_message
from ibgwd.dbus.interface import ManagerInterface
from ibgwd.errors import EX_UNAVAILABLE, IbgwdError
from ibgwd.names import OBJECT_PATH, InstanceNames
from ibgwd.status import Controller, Status

log = logging.getLogger(__name__)

# The D-Bus specification's value; dasbus 1.7 defines DBUS_NAME_FLAG_DO_NOT_QUEUE as 0x3, which
# is ALLOW_REPLACEMENT|REPLACE_EXISTING and would steal the name from a running daemon.
NAME_FLAG_DO_NOT_QUEUE = 0x4


class BusNameError(IbgwdError):
    """The instance's well-known name could not be owned (another daemon, or the bus policy)."""

    exit_code = EX_UNAVAILABLE
    dbus_name = "NameTaken"


class _ObjectHandler(ServerObjectHandler):  # type: ignore[misc]
    """dasbus's handler with ibgwd's error mapping and logging, whatever the bus was built with.

    Expected errors (the IbgwdError hierarchy, AccessDenied, InvalidArgs) are logged on one
    line without a traceback and replied with their message; anything else is logged with its
    traceback once, here, and replied as Error.Failed without its text.
    """

    def __init__(self, message_bus: Any, object_path: str, obj: Any, **kwargs: Any) -> None:
        kwargs["error_mapper"] = make_error_mapper()
        super().__init__(message_bus, object_path, obj, **kwargs)

    def _handle_method_error(
        self, invocation: Any, interface_name: str, method_name: str, error: Exception
    ) -> None:
        name = self._error_mapper.get_error_name(type(error))
        if is_expected(error):
            log.warning(
                "dbus call failed method=%s.%s error=%s message=%s",
                interface_name,
                method_name,
                name,
                error,
            )
        else:
            log.error(
                "dbus call crashed method=%s.%s error=%s",
                interface_name,
                method_name,
                name,
                exc_info=error,
            )
        self._server.set_call_error(invocation, name, reply_message(error))


class Publication:
    """Handle of a published instance; `close()` withdraws the name and the object."""

    def __init__(self, bus: Any, bus_name: str, interface: ManagerInterface) -> None:
        self._bus = bus
        self.bus_name = bus_name
        self.interface = interface
        self._closed = False

    def on_status(self, status: Status) -> None:
        """Controller callback (on the loop): emit PropertiesChanged if anything changed."""
        if self._closed:
            return
        changed = self.interface.update(status)
        if changed:
            log.debug("dbus properties changed names=%s", ",".join(changed))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._bus.proxy.ReleaseName(self.bus_name)
        except Exception as exc:  # the bus may already be gone at shutdown
            log.debug("release name failed name=%s error=%s", self.bus_name, exc)
        self._bus.unpublish_object(OBJECT_PATH)


def publish(bus: Any, controller: Controller, authorizer: Authorizer, instance: str) -> Publication:
    """Publish the Manager object of `instance` on `bus` (a dasbus MessageBus) and own its name.

    The object is exported before the name is requested, so whoever sees the name appear can
    call it at once. Raises BusNameError if the name is owned already or the policy refuses it.
    """
    bus_name = InstanceNames(instance).bus_name
    interface = ManagerInterface(controller, authorizer)
    bus.publish_object(OBJECT_PATH, interface, server_factory=_ObjectHandler)
    publication = Publication(bus, bus_name, interface)
    controller.subscribe(publication.on_status)
    try:
        reply = bus.proxy.RequestName(bus_name, NAME_FLAG_DO_NOT_QUEUE)
    except Exception as exc:
        bus.unpublish_object(OBJECT_PATH)
        raise BusNameError(f"cannot own the D-Bus name {bus_name}: {exc}") from exc
    if reply != DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER:
        bus.unpublish_object(OBJECT_PATH)
        raise BusNameError(
            f"cannot own the D-Bus name {bus_name}: another process owns it "
            f"(is {InstanceNames(instance).service} already running?)"
        )
    log.info("dbus published name=%s path=%s", bus_name, OBJECT_PATH)
    return publication
