"""org.ibgwd.Gateway1.Diagnostics: a screenshot of the instance's display, for admins only.

A separate object (/org/ibgwd/Gateway1/Diagnostics) so the Manager interface stays as it is.
Screenshot() starts a oneshot unit of the instance that runs `python3 -m ibgwd.screenshot`
as the gateway user with the display's environment (DISPLAY, and XAUTHORITY when the IBC unit
has one), waits for it (bounded), and replies with the PNG. Only root and members of group
ibgwd may call it: the bus policy says so, and the method checks the caller again.

No `from __future__ import annotations`: dasbus reads the annotations as real types.
"""

# ruff: noqa: N802  (D-Bus member names are CamelCase by convention)

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dasbus.server.interface import dbus_interface
from dasbus.typing import Byte, List

from ibgwd.config.model import Settings
from ibgwd.dbus.auth import ACTION_MANAGE, Authorizer, requires_authorization, secure_by_default
from ibgwd.errors import NotReadyError
from ibgwd.names import BUS_NAME_PREFIX, OBJECT_PATH, InstanceNames
from ibgwd.units.sandbox import LOCAL, Sandbox
from ibgwd.units.spec import Paths, UnitSpec, ibc_spec

log = logging.getLogger(__name__)

DIAGNOSTICS_PATH = OBJECT_PATH + "/Diagnostics"
DIAGNOSTICS_INTERFACE = BUS_NAME_PREFIX + ".Diagnostics"
CAPTURE_TIMEOUT_S = 20.0
MAX_PNG_BYTES = 32 * 1024 * 1024
# The capture reads the X socket in /tmp/.X11-unix and writes one file: no network at all.
CAPTURE_SANDBOX = Sandbox(
    address_families=LOCAL,
    system_call_filter=("@system-service",),
    memory_deny_write_execute=True,
    private_network=True,
    deny_all_ip=True,
    protect_proc="invisible",
    proc_subset="pid",
    protect_system="strict",
)


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


class ScreenshotTaker:
    """Runs the capture unit and returns the PNG (on the main loop; the wait is bounded)."""

    def __init__(
        self,
        settings: Settings,
        names: InstanceNames,
        paths: Paths,
        units: Any,  # ibgwd.units.systemd.UnitManager
        start_unit: Callable[[UnitSpec], str],
        uid: int,
        gid: int,
    ) -> None:
        self._settings = settings
        self._names = names
        self._paths = paths
        self._units = units
        self._start_unit = start_unit
        self._uid = uid
        self._gid = gid

    def __call__(self) -> bytes:
        directory = self._paths.runtime_dir / "screenshot"
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, self._uid, self._gid)
        os.chmod(directory, 0o700)
        output = directory / "screen.png"
        output.unlink(missing_ok=True)
        spec = capture_spec(self._settings, self._names, self._paths, output)
        job = self._start_unit(spec)
        result = self._units.wait_jobs([job], CAPTURE_TIMEOUT_S + 5)[job]
        try:
            if result != "done" or not output.is_file():
                raise NotReadyError(
                    f"the screenshot failed ({result}): is the display running? "
                    f"See journalctl -u {spec.name}"
                )
            size = output.stat().st_size
            if size > MAX_PNG_BYTES:
                raise NotReadyError(f"the screenshot is too large ({size} bytes)")
            return output.read_bytes()
        finally:
            output.unlink(missing_ok=True)


@secure_by_default
@dbus_interface(DIAGNOSTICS_INTERFACE)
class DiagnosticsInterface:
    """Diagnostics of one ibgwd instance (root and group ibgwd only)."""

    def __init__(self, capture: Callable[[], bytes], authorizer: Authorizer) -> None:
        self._capture = capture
        self._authorizer = authorizer

    @property
    def authorizer(self) -> Authorizer:
        return self._authorizer

    @requires_authorization(ACTION_MANAGE)
    def Screenshot(self) -> List[Byte]:
        """A PNG of the instance's X display (what a VNC viewer would show)."""
        log.info("dbus call=Screenshot")
        png = self._capture()
        log.info("event=screenshot bytes=%d", len(png))
        return png


def publish_diagnostics(bus: Any, capture: Callable[[], bytes], authorizer: Authorizer) -> None:
    """Export the Diagnostics object (before the instance's name is owned, like the Manager)."""
    from ibgwd.dbus.server import _ObjectHandler

    bus.publish_object(
        DIAGNOSTICS_PATH,
        DiagnosticsInterface(capture, authorizer),
        server_factory=_ObjectHandler,
    )


def attach_diagnostics(
    bus: Any, settings: Settings, names: InstanceNames, paths: Paths, units: Any, uid: int, gid: int
) -> None:
    """Composition for app.py: the screenshot taker behind the instance's Diagnostics object."""
    from ibgwd.dbus.auth import UnixGroupAuthorizer, bus_uid_lookup
    from ibgwd.units.properties import unit_properties
    from ibgwd.units.sandbox import sandbox_properties

    def start_unit(spec: UnitSpec) -> str:
        props = unit_properties(spec, parent=names.service, slice_name=names.slice)
        props += sandbox_properties(CAPTURE_SANDBOX)  # later entries win
        return str(units.start_transient(spec.name, props))

    taker = ScreenshotTaker(settings, names, paths, units, start_unit, uid, gid)
    publish_diagnostics(bus, taker, UnixGroupAuthorizer(bus_uid_lookup(bus)))
