"""org.ibgwd.Gateway1.Diagnostics: a screenshot of the instance's display, for admins only.

A separate object (/org/ibgwd/Gateway1/Diagnostics) so the Manager interface stays as it is.
Screenshot() starts a oneshot unit of the instance that runs `python3 -m ibgwd.screenshot`
as the gateway user with the display's environment (DISPLAY, and XAUTHORITY when the IBC unit
has one), waits for it (bounded), and replies with the PNG. Only root and members of group
ibgwd may call it: the bus policy says so, and the method checks the caller again.

No `from __future__ import annotations`: dasbus reads the annotations as real types.
"""

# ruff: noqa: N802  (D-Bus member names are CamelCase by convention)

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dasbus.server.interface import dbus_interface
from dasbus.typing import Bool, Byte, List, Str, Tuple

from ibgwd.config.model import Settings
from ibgwd.dbus.auth import ACTION_MANAGE, Authorizer, requires_authorization, secure_by_default
from ibgwd.errors import NotReadyError
from ibgwd.names import BUS_NAME_PREFIX, OBJECT_PATH, InstanceNames
from ibgwd.units.sandbox import DISPLAY
from ibgwd.units.spec import Paths, UnitSpec, ibc_spec

log = logging.getLogger(__name__)

DIAGNOSTICS_PATH = OBJECT_PATH + "/Diagnostics"
DIAGNOSTICS_INTERFACE = BUS_NAME_PREFIX + ".Diagnostics"
CAPTURE_TIMEOUT_S = 20.0
MAX_PNG_BYTES = 32 * 1024 * 1024
# The capture reads the X socket in /tmp/.X11-unix and writes one file: the display's sandbox
# (no network at all), with a read-only system.
CAPTURE_SANDBOX = dataclasses.replace(DISPLAY, protect_system="strict")


def capture_spec(settings: Settings, names: InstanceNames, paths: Paths, output: Path) -> UnitSpec:
    """The oneshot unit that writes a PNG of the display to `output` (pure)."""
    environment = [f"DISPLAY=:{settings.display}"]
    if settings.gateways:  # the same X credentials as the Gateway itself
        ibc = ibc_spec(settings, settings.gateways[0], names, paths)
        environment += [e for e in ibc.environment if e.startswith("XAUTHORITY=")]
    if os.environ.get("PYTHONPATH"):  # ibgwd run from a source tree (tests, development)
        environment.append(f"PYTHONPATH={os.environ['PYTHONPATH']}")
    return UnitSpec(
        component="screenshot",
        name=names.unit("screenshot"),
        description=f"ibgwd {names.instance}: screenshot of display :{settings.display}",
        exec_start=(sys.executable, "-P", "-m", "ibgwd.screenshot", str(output)),
        environment=tuple(environment),
        service_type="oneshot",
        timeout_start_s=CAPTURE_TIMEOUT_S,
        read_write_paths=(str(output.parent),),
    )


class Pending:
    """A method result that arrives later, on the loop: the reply is sent when it resolves.

    The handler below replies once `resolve` or `reject` is called, so the daemon's loop never
    waits for the capture (no nested main loop, no blocking call)."""

    def __init__(self) -> None:
        self._done: Callable[[Any, Exception | None], None] | None = None
        self._result: tuple[Any, Exception | None] | None = None

    def on_done(self, callback: Callable[[Any, Exception | None], None]) -> None:
        self._done = callback
        if self._result is not None:
            callback(*self._result)

    def resolve(self, value: Any) -> None:
        self._finish(value, None)

    def reject(self, error: Exception) -> None:
        self._finish(None, error)

    def _finish(self, value: Any, error: Exception | None) -> None:
        if self._result is not None:
            return
        self._result = (value, error)
        if self._done is not None:
            self._done(value, error)


class ScreenshotTaker:
    """Starts the capture unit and resolves a Pending with the PNG when its job is done."""

    def __init__(
        self,
        settings: Settings,
        names: InstanceNames,
        paths: Paths,
        start_unit: Callable[[UnitSpec], str],
        uid: int,
        gid: int,
        timer: Callable[[float, Callable[[], None]], None],
    ) -> None:
        self._settings = settings
        self._names = names
        self._paths = paths
        self._start_unit = start_unit
        self._uid = uid
        self._gid = gid
        self._timer = timer
        self._waiting: dict[str, tuple[Pending, Path, str]] = {}  # job -> (reply, file, unit)

    def __call__(self) -> Pending:
        pending = Pending()
        if self._waiting:
            pending.reject(NotReadyError("a screenshot is being taken: try again in a moment"))
            return pending
        directory = self._paths.runtime_dir / "screenshot"
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, self._uid, self._gid)
        os.chmod(directory, 0o700)
        output = directory / "screen.png"
        output.unlink(missing_ok=True)
        spec = capture_spec(self._settings, self._names, self._paths, output)
        job = self._start_unit(spec)
        self._waiting[job] = (pending, output, spec.name)
        self._timer(CAPTURE_TIMEOUT_S + 5, lambda: self.job_removed(job, "timeout"))
        return pending

    def job_removed(self, job: str, result: str) -> None:
        """systemd finished a job (any job: ours are recognised by their path)."""
        waiting = self._waiting.pop(job, None)
        if waiting is None:
            return
        pending, output, unit = waiting
        try:
            if result != "done" or not output.is_file():
                raise NotReadyError(
                    f"the screenshot failed ({result}): is the display running? "
                    f"See journalctl -u {unit}"
                )
            size = output.stat().st_size
            if size > MAX_PNG_BYTES:
                raise NotReadyError(f"the screenshot is too large ({size} bytes)")
            png = output.read_bytes()
            log.info("event=screenshot bytes=%d", len(png))
            pending.resolve(png)
        except Exception as exc:
            pending.reject(exc)
        finally:
            output.unlink(missing_ok=True)


@secure_by_default
@dbus_interface(DIAGNOSTICS_INTERFACE)
class DiagnosticsInterface:
    """Diagnostics of one ibgwd instance (root and group ibgwd only)."""

    def __init__(
        self,
        capture: Callable[[], Pending],
        authorizer: Authorizer,
        notify_test: Callable[[], Pending] | None = None,
    ) -> None:
        self._capture = capture
        self._authorizer = authorizer
        self._notify_test = notify_test

    @property
    def authorizer(self) -> Authorizer:
        return self._authorizer

    @requires_authorization(ACTION_MANAGE)
    def Screenshot(self) -> List[Byte]:
        """A PNG of the instance's X display (what a VNC viewer would show)."""
        log.info("dbus call=Screenshot")
        return self._capture()  # a Pending: the handler replies when it resolves

    @requires_authorization(ACTION_MANAGE)
    def TestNotification(self) -> Tuple[Bool, Str]:
        """Send a test notification through NOTIFY_URL and NOTIFY_COMMAND now.

        Returns whether it was delivered (the webhook answered 2xx; the command's unit was
        started) and what happened, e.g. "NOTIFY_URL: https://ntfy.sh/… accepted it (HTTP 200)".
        """
        log.info("dbus call=TestNotification")
        if self._notify_test is None:
            pending = Pending()
            pending.resolve((False, "notifications are not available in this daemon"))
            return pending
        return self._notify_test()


def _deferring_handler() -> type:
    """ibgwd's object handler that replies to a Pending result when it resolves."""
    from ibgwd.dbus.server import _ObjectHandler

    class DeferringHandler(_ObjectHandler):
        def _handle_method_result(
            self, invocation: Any, method_spec: Any, method_reply: Any
        ) -> None:
            if not isinstance(method_reply, Pending):
                super()._handle_method_result(invocation, method_spec, method_reply)
                return
            interface, member = method_spec.interface_name, method_spec.name

            def done(value: Any, error: Exception | None) -> None:
                if error is not None:
                    self._handle_method_error(invocation, interface, member, error)
                    return
                super(DeferringHandler, self)._handle_method_result(invocation, method_spec, value)

            method_reply.on_done(done)

    return DeferringHandler


def publish_diagnostics(
    bus: Any,
    capture: Callable[[], Pending],
    authorizer: Authorizer,
    notify_test: Callable[[], Pending] | None = None,
) -> None:
    """Export the Diagnostics object (before the instance's name is owned, like the Manager)."""
    bus.publish_object(
        DIAGNOSTICS_PATH,
        DiagnosticsInterface(capture, authorizer, notify_test),
        server_factory=_deferring_handler(),
    )


def attach_diagnostics(
    bus: Any,
    settings: Settings,
    names: InstanceNames,
    paths: Paths,
    units: Any,
    uid: int,
    gid: int,
    notifications: Any = None,  # ibgwd.notifications.service.Notifications
    status: Callable[[], Any] | None = None,  # the supervisor's latest Status
) -> None:
    """Composition for app.py: the screenshot taker behind the instance's Diagnostics object."""
    from gi.repository import GLib

    from ibgwd.dbus.auth import UnixGroupAuthorizer, bus_uid_lookup
    from ibgwd.units.properties import unit_properties
    from ibgwd.units.sandbox import sandbox_properties

    def start_unit(spec: UnitSpec) -> str:
        props = unit_properties(spec, parent=names.service, slice_name=names.slice)
        props += sandbox_properties(CAPTURE_SANDBOX)  # later entries win
        return str(units.start_transient(spec.name, props))

    def timer(seconds: float, callback: Callable[[], None]) -> None:
        def once() -> bool:
            callback()
            return False

        GLib.timeout_add(int(seconds * 1000), once)

    taker = ScreenshotTaker(settings, names, paths, start_unit, uid, gid, timer)
    units.on_job_removed(taker.job_removed)

    def notify_test() -> Pending:
        pending = Pending()

        def call_soon(callback: Callable[[], None]) -> None:
            def once() -> bool:
                callback()
                return False

            GLib.idle_add(once)

        notifications.test(
            status() if status else None,
            lambda ok, detail: pending.resolve((ok, detail)),
            call_soon,
        )
        timer(30.0, lambda: pending.resolve((False, "no answer from the webhook within 30 s")))
        return pending

    publish_diagnostics(
        bus,
        taker,
        UnixGroupAuthorizer(bus_uid_lookup(bus)),
        notify_test if notifications is not None else None,
    )
