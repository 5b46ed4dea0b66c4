"""The one systemd client: transient units over the system bus (dasbus)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dasbus.error import DBusError
from dasbus.typing import get_native

from ibgwd.errors import UnitError
from ibgwd.units.properties import Property

log = logging.getLogger(__name__)

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
JOB_IFACE = "org.freedesktop.systemd1.Job"
CALL_TIMEOUT_MS = 10_000
DETAIL_REFRESH_S = 30.0  # a safety net: PropertiesChanged invalidates details at once
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"


@dataclass(frozen=True)
class UnitInfo:
    name: str
    active_state: str
    sub_state: str
    n_restarts: int
    main_pid: int
    job: bool = False  # a start/stop job is queued
    description: str = ""

    @property
    def alive(self) -> bool:
        return self.active_state not in ("inactive", "failed") or self.job


class UnitManager(Protocol):
    """What the supervisor needs from systemd (a fake implements it in tests)."""

    def start_transient(self, name: str, properties: list[Property]) -> str: ...

    def stop(self, name: str) -> str | None: ...

    def kill(self, name: str, signal: int) -> None: ...

    def list_units(self, prefix: str, *, fresh: bool = False) -> list[UnitInfo]: ...

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call back (on the loop) when a listed unit's properties changed."""

    def on_job_removed(self, callback: Callable[[str, str], None]) -> None:
        """Call back (on the loop) with (job path, result) when systemd finished a job."""

    def job_type(self, unit: str) -> str:
        """The type of the job systemd runs on `unit` now ("stop", "restart", ...; "" if none)."""

    def system_state(self) -> str:
        """systemd's SystemState: "running", "degraded", "stopping" (shutdown), ..."""


def _error_name(exc: DBusError) -> str:
    return str(getattr(exc, "dbus_name", ""))


class SystemdClient:
    """Starts, stops and observes transient units; JobRemoved tells when a job finished."""

    def __init__(self, bus: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._bus = bus
        self._clock = clock
        self._manager = bus.get_proxy(SYSTEMD, SYSTEMD_PATH, MANAGER_IFACE)
        self._job_callbacks: list[Callable[[str, str], None]] = []
        self._details: dict[str, tuple[tuple[str, str, bool], float, int, int]] = {}
        self._watched: dict[str, Any] = {}  # unit object path -> its Properties proxy
        self._changed: Callable[[], None] | None = None
        self._manager.JobRemoved.connect(self._on_job_removed)
        self._manager.Subscribe(timeout=CALL_TIMEOUT_MS)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._changed = callback

    def on_job_removed(self, callback: Callable[[str, str], None]) -> None:
        self._job_callbacks.append(callback)

    def _properties(self, name: str, path: str) -> Any:
        """The unit's Properties proxy, made once per path: systemd's PropertiesChanged tells when
        to look again, so an idle daemon asks systemd nothing but a rare safety-net poll."""
        proxy = self._watched.get(path)
        if proxy is None:
            proxy = self._bus.get_proxy(SYSTEMD, path, PROPERTIES_IFACE)
            proxy.PropertiesChanged.connect(lambda *_args: self._unit_changed(name))
            self._watched[path] = proxy
        return proxy

    def _unit_changed(self, name: str) -> None:
        self._details.pop(name, None)
        if self._changed is not None:
            self._changed()

    def _on_job_removed(self, _id: int, job: str, _unit: str, result: str) -> None:
        for callback in self._job_callbacks:
            try:
                callback(str(job), str(result))
            except Exception:  # a signal handler must never take the subscription down
                log.exception("event=callback_failed callback=job_removed")

    def start_transient(self, name: str, properties: list[Property]) -> str:
        try:
            return str(
                self._manager.StartTransientUnit(
                    name, "replace", properties, [], timeout=CALL_TIMEOUT_MS
                )
            )
        except DBusError as exc:
            if not _error_name(exc).endswith("UnitExists"):
                raise UnitError(f"systemd refused to start {name}: {exc}") from exc
        # A failed unit not yet garbage-collected: reset it and retry once. (A running one is
        # the supervisor's business: it adopts or stops units before starting them.)
        log.info("event=unit_leftover unit=%s action=reset_failed", name)
        self.reset_failed(name)
        try:
            return str(
                self._manager.StartTransientUnit(
                    name, "replace", properties, [], timeout=CALL_TIMEOUT_MS
                )
            )
        except DBusError as exc:
            raise UnitError(f"systemd refused to start {name}: {exc}") from exc

    def stop(self, name: str) -> str | None:
        try:
            return str(self._manager.StopUnit(name, "replace", timeout=CALL_TIMEOUT_MS))
        except DBusError as exc:
            if _error_name(exc).endswith(("NoSuchUnit", "LoadFailed")):
                return None
            raise UnitError(f"systemd refused to stop {name}: {exc}") from exc

    def kill(self, name: str, signal: int) -> None:
        """Signal every process of the unit now (no job: works while a stop job waits)."""
        with contextlib.suppress(DBusError):  # gone already
            self._manager.KillUnit(name, "all", int(signal), timeout=CALL_TIMEOUT_MS)

    def reset_failed(self, name: str) -> None:
        # Not loaded or not failed: nothing to reset.
        with contextlib.suppress(DBusError):
            self._manager.ResetFailedUnit(name, timeout=CALL_TIMEOUT_MS)

    def list_units(self, prefix: str, *, fresh: bool = False) -> list[UnitInfo]:
        """One ListUnitsByPatterns call; MainPID and NRestarts are asked for only when a unit's
        state changed, its details are older than DETAIL_REFRESH_S (this runs every poll), or
        `fresh` is asked for."""
        rows = self._manager.ListUnitsByPatterns([], [f"{prefix}*"], timeout=CALL_TIMEOUT_MS)
        now = self._clock()
        out = []
        seen = set()
        for row in rows:
            name, desc, _load, active, sub, _follow, path, job_id = row[:8]
            seen.add(name)
            restarts, pid = 0, 0
            if name.endswith(".service"):
                key = (active, sub, bool(job_id))
                cached = self._details.get(name)
                if not fresh and cached and cached[0] == key and now - cached[1] < DETAIL_REFRESH_S:
                    restarts, pid = cached[2], cached[3]
                else:
                    try:
                        props = self._properties(name, path)
                        restarts = int(get_native(props.Get(SERVICE_IFACE, "NRestarts")))
                        pid = int(get_native(props.Get(SERVICE_IFACE, "MainPID")))
                        self._details[name] = (key, now, restarts, pid)
                    except DBusError:
                        pass  # the unit vanished between the two calls
            out.append(UnitInfo(name, active, sub, restarts, pid, bool(job_id), str(desc)))
        for gone in set(self._details) - seen:
            del self._details[gone]
        return out

    def job_type(self, unit: str) -> str:
        try:
            path = self._manager.GetUnit(unit, timeout=CALL_TIMEOUT_MS)
            props = self._bus.get_proxy(SYSTEMD, path, PROPERTIES_IFACE)
            _id, job_path = get_native(props.Get(UNIT_IFACE, "Job"))
            if not _id:
                return ""
            job = self._bus.get_proxy(SYSTEMD, job_path, PROPERTIES_IFACE)
            return str(get_native(job.Get(JOB_IFACE, "JobType")))
        except DBusError as exc:  # the job ended between the calls, or the unit is unknown
            log.info("event=job_type_unknown unit=%s error=%s", unit, exc)
            return ""

    def system_state(self) -> str:
        props = self._bus.get_proxy(SYSTEMD, SYSTEMD_PATH, PROPERTIES_IFACE)
        return str(get_native(props.Get(MANAGER_IFACE, "SystemState")))
