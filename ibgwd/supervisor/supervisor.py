"""The imperative shell of supervision: runs units, probes and recovery on the GLib main loop."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from gi.repository import GLib

from ibgwd import __version__, notify, schedule
from ibgwd.config.model import Mode, Settings
from ibgwd.errors import CommandError, NotReadyError
from ibgwd.ibc.command import send_command
from ibgwd.names import InstanceNames
from ibgwd.probes.api import ProbeResult, probe_full, probe_handshake
from ibgwd.status import STATE_SEVERITY, ComponentStatus, GatewayStatus, State, Status
from ibgwd.supervisor import budget, health, ibclog, lifecycle
from ibgwd.supervisor.health import Action, Health, Policy
from ibgwd.supervisor.logwatch import JournalFollower
from ibgwd.units import spec as specs
from ibgwd.units import tunnel
from ibgwd.units.hooks import HOOK_TIMEOUT_S, Stage, hook_spec
from ibgwd.units.properties import unit_properties
from ibgwd.units.spec import Paths, UnitSpec
from ibgwd.units.systemd import UnitInfo, UnitManager

log = logging.getLogger(__name__)

UNIT_EVENT_DELAY_MS = 100
TICK_S = 2.0
UNIT_POLL_S = 10.0  # a safety net: unit changes arrive as PropertiesChanged signals
RETRY_PROBE_S = 0.1  # after a failed liveness probe
STARTUP_PROBE_S = 0.5  # while not ready: refused costs ~30 µs, and readiness shows within 0.5 s
STOP_TIMEOUT_S = 25.0
CHILD_STOP_S = 5.0  # x11vnc sometimes hangs in its SIGTERM handler
COMMAND_TIMEOUT_S = 5.0


class Files(Protocol):
    """Renders and writes what the children read; returns digests per unit component."""

    def write(self, settings: Settings) -> dict[str, str]: ...


class ProbeObserver(Protocol):
    def observe(self, mode: str, seconds: float, ok: bool) -> None: ...


@dataclass
class _Gateway:
    mode: Mode
    health: Health
    follower: JournalFollower | None = None
    probing: bool = False
    timer: int = 0


def static_specs(
    settings: Settings, names: InstanceNames, paths: Paths, digests: dict[str, str]
) -> dict[str, UnitSpec]:
    """Units that run for the whole life of the instance (relays start once the API answers)."""
    out = [specs.display_spec(settings, names)]
    out += [specs.ibc_spec(settings, g, names, paths) for g in settings.gateways]
    if settings.vnc_enabled:
        out.append(specs.vnc_spec(settings, names, paths))
    out += tunnel.tunnel_specs(settings, names, paths)
    return {s.component: replace(s, content_digest=digests.get(s.component, "")) for s in out}


def relay_specs(settings: Settings, names: InstanceNames) -> dict[str, UnitSpec]:
    if not settings.relay_enabled:
        return {}
    out = [specs.relay_spec(settings, g, names) for g in settings.gateways if g.relay_port]
    return {s.component: s for s in out}


def digest(*texts: str) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


class Supervisor:
    """Owns the children of one instance and the health of each gateway; a status.Controller."""

    def __init__(
        self,
        *,
        names: InstanceNames,
        settings: Settings,
        paths: Paths,
        load_settings: Callable[[], Settings],
        files: Files,
        units: UnitManager,
        notifier: notify.Notifier,
        executor: Executor,
        observer: ProbeObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        versions: tuple[str, str] = ("", ""),
    ) -> None:
        self._names = names
        self._settings = settings
        self._paths = paths
        self._load_settings = load_settings
        self._files = files
        self._units = units
        self._notifier = notifier
        self._executor = executor
        self._observer = observer
        self._clock = clock
        self._wallclock = wallclock
        self._versions = versions
        self._started_at = clock()
        self._started_wall = wallclock()
        self._specs: dict[str, UnitSpec] = {}
        self._relays_running: dict[str, UnitSpec] = {}
        self._gateways: dict[str, _Gateway] = {}
        self._components: tuple[ComponentStatus, ...] = ()
        self._extra_restarts: dict[str, int] = {}
        self._subscribers: list[Callable[[Status], None]] = []
        self._ready_sent = False
        self._ready_wall = 0.0
        self._reloading = False
        self._reloads = 0
        self._reload_failures = 0
        self._stopping = False
        self._status_text = ""
        self._status = self._snapshot()
        self._timers: list[int] = []
        self._poll_pending = False

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Render files, clean leftovers of a crashed run, start the children, arm the timers."""
        self._set_text("starting display and gateway")
        for info in self._units.list_units(self._names.unit_prefix()):
            log.info(
                "event=leftover_unit unit=%s state=%s action=stop", info.name, info.active_state
            )
            job = self._units.stop(info.name)
            if job:
                self._units.wait_jobs([job], STOP_TIMEOUT_S)
        digests = self._files.write(self._settings)
        self._specs = static_specs(self._settings, self._names, self._paths, digests)
        for gw in self._settings.gateways:
            self._gateways[gw.mode.value] = _Gateway(gw.mode, Health(since=self._clock()))
        self._run_hook(Stage.START, wait=True)
        display_job = self._start_unit(self._specs["display"])
        if self._hook(Stage.X):
            self._units.wait_jobs([display_job], HOOK_TIMEOUT_S)
            self._run_hook(Stage.X, wait=True)
        jobs = [
            self._start_unit(unit_spec)
            for unit_spec in self._specs.values()
            if unit_spec.component != "display"
        ]
        if self._hook(Stage.IBC):
            self._units.wait_jobs(jobs, HOOK_TIMEOUT_S)  # IBC launched, as the old image waited
            self._run_hook(Stage.IBC, wait=False)
        for gateway in self._gateways.values():
            self._watch_log(gateway)
            self._schedule_probe(gateway, STARTUP_PROBE_S)
        self._timers.append(GLib.timeout_add(int(UNIT_POLL_S * 1000), self._poll_units))
        self._timers.append(GLib.timeout_add(int(TICK_S * 1000), self._tick))
        self._units.on_change(self._unit_changed)
        interval = notify.watchdog_interval_s()
        if interval:
            self._timers.append(GLib.timeout_add(int(interval * 1000), self._watchdog))
        self._publish()

    def stop(self) -> None:
        """Graceful stop: relays first, IBC gets STOP, then everything else."""
        if self._stopping:
            return
        self._stopping = True
        self._notifier.send(notify.stopping("stopping: sending STOP to IBC"))
        for timer in self._timers:
            GLib.source_remove(timer)
        self._timers.clear()
        for gateway in self._gateways.values():
            gateway.health = replace(gateway.health, state=State.STOPPING)
            if gateway.timer:
                GLib.source_remove(gateway.timer)
                gateway.timer = 0
            if gateway.follower:
                gateway.follower.stop()
        # Children are ordered Before= ibgwd: while ibgwd itself is being stopped, their stop
        # jobs wait for ibgwd to exit. So nothing here waits for a stop job: the relays are
        # signalled directly (clients get refused from now on), IBC gets a graceful STOP and we
        # wait for its process to end; systemd stops the rest once ibgwd has exited.
        for relay in self._relays_running.values():
            self._units.kill(relay.name, signal.SIGTERM)
        self._relays_running.clear()
        for gw in self._settings.gateways:
            try:
                send_command("127.0.0.1", gw.command_port, "STOP", COMMAND_TIMEOUT_S)
            except CommandError as exc:
                log.warning("event=ibc_stop_failed mode=%s error=%s", gw.mode.value, exc)
        ibc_units = {s.name for s in self._specs.values() if s.component.startswith("ibc-")}
        self._wait_gone(ibc_units, STOP_TIMEOUT_S)  # a Gateway still up is signalled below
        # The rest: queue their stops (they run at once unless systemd is stopping ibgwd, then
        # they wait for us), signal them now, and wait a bounded time so that nothing is left
        # when `systemctl stop ibgwd` returns; the display goes last.
        rest = [s for s in self._specs.values() if s.component != "display"]
        display = [s for s in self._specs.values() if s.component == "display"]
        for group in (rest, display):
            for unit_spec in group:
                self._units.stop(unit_spec.name)
                self._units.kill(unit_spec.name, signal.SIGTERM)
            for name in self._wait_gone({s.name for s in group}, CHILD_STOP_S):
                log.warning("event=child_stop_timeout unit=%s action=sigkill", name)
                self._units.kill(name, signal.SIGKILL)
        self._publish()

    def _wait_gone(self, names: set[str], timeout_s: float) -> set[str]:
        """Wait until none of the units has a running process; returns those that still do.

        Not `UnitInfo.alive`: while systemd stops ibgwd, a child's queued stop job must not
        count, only its processes."""
        deadline = self._clock() + timeout_s
        while True:
            units = self._units.list_units(self._names.unit_prefix())
            alive = {u.name for u in units if u.active_state not in ("inactive", "failed")} & names
            if not alive or self._clock() >= deadline:
                return alive
            time.sleep(0.1)

    # ---- units ------------------------------------------------------------------------------

    def _start_unit(self, unit_spec: UnitSpec) -> str:
        """Start the unit; returns systemd's start job (it may still be running)."""
        props = unit_properties(unit_spec, parent=self._names.service, slice_name=self._names.slice)
        job = self._units.start_transient(unit_spec.name, props)
        log.info(
            "event=unit_started unit=%s command=%s", unit_spec.name, specs.command_line(unit_spec)
        )
        if unit_spec.component.startswith("ibc-"):
            mode = unit_spec.component.removeprefix("ibc-")
            gateway = self._gateways.get(mode)
            if gateway:
                gateway.health = health.started(gateway.health, self._clock())
        return job

    def _hook(self, stage: Stage) -> UnitSpec | None:
        return hook_spec(self._settings, self._names, self._paths, stage)

    def _run_hook(self, stage: Stage, *, wait: bool) -> None:
        """Run a hook directory's scripts; like the old image, a failure does not stop startup."""
        unit_spec = self._hook(stage)
        if unit_spec is None:
            return
        self._set_text(f"running {stage.value.upper()}_SCRIPTS")
        job = self._start_unit(unit_spec)
        if wait:
            result = self._units.wait_jobs([job], HOOK_TIMEOUT_S)[job]
            log.info("event=hook stage=%s result=%s", stage.value, result)

    def _stop_units(self, unit_specs: Sequence[UnitSpec]) -> None:
        # systemd's NRestarts starts again at 0 for a re-created transient unit: carry it over so
        # the restart counters exported by metrics and D-Bus never go down.
        units = self._units.list_units(self._names.unit_prefix(), fresh=True)
        seen = {u.name: u.n_restarts for u in units}
        for s in unit_specs:
            if seen.get(s.name):
                self._extra_restarts[s.component] = (
                    self._extra_restarts.get(s.component, 0) + seen[s.name]
                )
        jobs = [job for s in unit_specs if (job := self._units.stop(s.name))]
        if jobs:
            self._units.wait_jobs(jobs, STOP_TIMEOUT_S)

    def _restart_unit(self, unit_spec: UnitSpec) -> None:
        self._stop_units([unit_spec])
        self._extra_restarts[unit_spec.component] = (
            self._extra_restarts.get(unit_spec.component, 0) + 1
        )
        self._start_unit(unit_spec)

    def _refresh_components(self) -> dict[str, UnitInfo]:
        infos = {u.name: u for u in self._units.list_units(self._names.unit_prefix())}
        self._components = tuple(self._component_status(s, infos.get(s.name)) for s in self._all())
        return infos

    def _unit_changed(self) -> None:
        """A child's state changed: look soon, once for a burst of signals."""
        if not self._poll_pending and not self._stopping:
            self._poll_pending = True
            GLib.timeout_add(UNIT_EVENT_DELAY_MS, self._poll_after_event)

    def _poll_after_event(self) -> bool:
        self._poll_pending = False
        if not self._stopping:
            self._poll_units()
        return False

    def _poll_units(self) -> bool:
        infos = self._refresh_components()
        now = self._clock()
        for gateway in self._gateways.values():
            ibc = self._specs.get(f"ibc-{gateway.mode.value}")
            info = infos.get(ibc.name) if ibc else None
            alive = info is not None and info.alive
            self._apply(gateway, *health.on_ibc_unit(gateway.health, alive, now, self._policy()))
        self._publish()
        return True

    def _tick(self) -> bool:
        """Deadlines (login timeout, backoff) and the start-timeout extension; no I/O."""
        now = self._clock()
        for gateway in self._gateways.values():
            self._apply(gateway, *health.on_tick(gateway.health, now, self._policy()))
        if not self._ready_sent and not self._stopping:
            waiting = {State.FAILED, State.RATE_LIMITED}
            if all(g.health.state not in waiting for g in self._gateways.values()):
                self._notifier.send(notify.extend_timeout(TICK_S * 5))
        self._publish()
        return True

    def _all(self) -> list[UnitSpec]:
        return [*self._specs.values(), *self._relays_running.values()]

    def _component_status(self, unit_spec: UnitSpec, info: UnitInfo | None) -> ComponentStatus:
        restarts = self._extra_restarts.get(unit_spec.component, 0)
        if info is None:
            return ComponentStatus(
                unit_spec.component, unit_spec.name, "inactive", "dead", restarts, 0
            )
        return ComponentStatus(
            unit_spec.component,
            unit_spec.name,
            info.active_state,
            info.sub_state,
            restarts + info.n_restarts,
            info.main_pid,
        )

    # ---- probes and health ------------------------------------------------------------------

    def _policy(self) -> Policy:
        s = self._settings
        return Policy(
            failure_threshold=s.probe_failure_threshold,
            login_timeout_s=s.login_timeout_s,
            recovery_max_per_hour=s.recovery_max_per_hour,
            recovery_backoff_s=s.recovery_backoff_s,
            relay=s.relay_enabled,
        )

    def _schedule_probe(self, gateway: _Gateway, delay_s: float) -> None:
        if gateway.timer:
            GLib.source_remove(gateway.timer)
        gateway.timer = GLib.timeout_add(int(delay_s * 1000), self._probe, gateway)

    def _probe(self, gateway: _Gateway) -> bool:
        gateway.timer = 0
        if self._stopping or gateway.probing:
            return False
        settings = self._settings
        port = settings.gateway(gateway.mode).api_port
        ready = gateway.health.state in (State.READY, State.DEGRADED)
        gateway.probing = True
        future: Future[ProbeResult]
        if ready:
            future = self._executor.submit(
                probe_handshake, "127.0.0.1", port, settings.probe_timeout_s
            )
        else:
            future = self._executor.submit(
                probe_full, "127.0.0.1", port, settings.probe_client_id, settings.probe_timeout_s
            )
        future.add_done_callback(lambda f: GLib.idle_add(self._probe_done, gateway, f.result()))
        return False

    def _probe_done(self, gateway: _Gateway, result: ProbeResult) -> bool:
        gateway.probing = False
        if self._stopping or gateway.mode.value not in self._gateways:
            return False
        if self._observer:
            self._observer.observe(gateway.mode.value, result.latency_s, result.outcome.alive)
        before = gateway.health.state
        now = self._clock()
        planned = lifecycle.planned(self._settings, self._wallclock(), now)
        gateway.health = health.set_planned(gateway.health, planned)
        self._apply(
            gateway, *health.on_probe(gateway.health, result, now, self._gateway_policy(gateway))
        )
        if before is not gateway.health.state:
            log.info(
                "event=probe mode=%s outcome=%s latency_s=%.4f state=%s",
                gateway.mode.value,
                result.outcome.value,
                result.latency_s,
                gateway.health.state.value,
            )
        state = gateway.health.state
        if state is State.READY:
            delay = self._settings.probe_interval_s
        elif state is State.DEGRADED:
            # Confirm a failure at once: detection takes about interval + threshold × timeout.
            delay = min(RETRY_PROBE_S, self._settings.probe_interval_s)
        else:
            delay = STARTUP_PROBE_S
        self._schedule_probe(gateway, delay)
        self._publish()
        return False

    def _gateway_policy(self, gateway: _Gateway) -> Policy:
        return replace(
            self._policy(),
            mode=gateway.mode.value,
            twofa_restart=self._settings.twofa_timeout_action == "restart",
        )

    def _budget_path(self) -> Path:
        return self._paths.state_dir / budget.FILE_NAME

    def _save_budget(self) -> None:
        mono, wall = self._clock(), self._wallclock()
        saved = budget.load(self._budget_path())
        for mode, g in self._gateways.items():
            saved[mode] = health.budget_to_wall(g.health, mono, wall)
        budget.save(self._budget_path(), saved)

    def _watch_log(self, gateway: _Gateway) -> None:
        mode = gateway.mode.value
        unit = self._names.unit("ibc", mode)
        # What earlier runs of ibgwd spent of the recovery budget still counts.
        saved = budget.load(self._budget_path()).get(mode)
        if saved:
            gateway.health = health.budget_from_wall(
                gateway.health, saved, self._clock(), self._wallclock()
            )

        def on_line(line: str) -> None:
            classified = ibclog.classify(line)
            if classified.event is ibclog.IbcEvent.NONE or self._stopping:
                return
            log.info(
                "event=ibc_log mode=%s kind=%s value=%s",
                mode,
                classified.event.value,
                classified.value or "-",
            )
            now = self._clock()
            planned = lifecycle.planned(self._settings, self._wallclock(), now)
            gateway.health = health.set_planned(gateway.health, planned)
            self._apply(
                gateway,
                *health.on_log(gateway.health, classified, now, self._gateway_policy(gateway)),
            )
            self._publish()

        gateway.follower = JournalFollower(unit, on_line)
        gateway.follower.start()

    def _apply(self, gateway: _Gateway, new: Health, actions: list[Action]) -> None:
        if new.state is not gateway.health.state:
            log.info(
                "event=state mode=%s from=%s to=%s detail=%r",
                gateway.mode.value,
                gateway.health.state.value,
                new.state.value,
                new.detail,
            )
        gateway.health = new
        for action in actions:
            self._execute(gateway, action)

    def _execute(self, gateway: _Gateway, action: Action) -> None:
        mode = gateway.mode.value
        log.info("event=action mode=%s action=%s", mode, action.value)
        relay = relay_specs(self._settings, self._names).get(f"relay-{mode}")
        ibc = self._specs[f"ibc-{mode}"]
        if action is Action.START_RELAY and relay:
            self._start_unit(relay)
            self._relays_running[relay.component] = relay
            self._refresh_components()  # so READY's snapshot already lists the relay
        elif action is Action.STOP_RELAY and relay:
            self._relays_running.pop(relay.component, None)
            self._stop_units([relay])
        elif action is Action.SOFT_RESTART:
            try:
                self._soft_restart(gateway)
            except CommandError as exc:
                log.warning("event=soft_restart_failed mode=%s error=%s", mode, exc)
                self._apply(
                    gateway,
                    *health.escalate(
                        gateway.health, self._clock(), self._policy(), "IBC did not accept RESTART"
                    ),
                )
        elif action is Action.CLEAR_TOKEN:
            for path in lifecycle.remove_tokens(self._settings.gateway(gateway.mode).settings_path):
                log.warning(
                    "event=stale_token_removed mode=%s path=%s next=full_login detail=%s",
                    mode,
                    path,
                    "the login stalled with an autorestart token present (IBC issue 235)",
                )
                gateway.health = health.token_removed(gateway.health, path)
        elif action is Action.RESTART_IBC_UNIT:
            self._restart_unit(ibc)
        elif action is Action.STOP_IBC_UNIT:
            self._stop_units([ibc])
        elif action is Action.HALT_LOGINS:
            # IBC answers a "Login failed" dialog with a cold restart (a COLDRESTART flag, then
            # its launcher logs in again with the same credentials): remove the flag and stop
            # the unit (SIGTERM; without the flag the launcher's loop then ends).
            settings_path = self._settings.gateway(gateway.mode).settings_path
            lifecycle.remove_cold_restart_flags(settings_path)
            log.error(
                "event=login_failed mode=%s action=stop_ibc detail=%r",
                mode,
                gateway.health.detail,
            )

            self._stop_units([ibc])
            lifecycle.remove_cold_restart_flags(settings_path)
        elif action is Action.SAVE_BUDGET:
            self._save_budget()
        elif action is Action.GIVE_UP:
            log.error("event=give_up mode=%s detail=%r", mode, gateway.health.detail)
            self._notifier.send("WATCHDOG=trigger")

    def _watchdog(self) -> bool:
        if all(g.health.state is not State.FAILED for g in self._gateways.values()):
            self._notifier.send(notify.watchdog())
        return True

    # ---- status ----------------------------------------------------------------------------

    def _wall(self, mono: float) -> float:
        return 0.0 if not mono else self._started_wall + (mono - self._started_at)

    def _gateway_status(self, gateway: _Gateway) -> GatewayStatus:
        h = gateway.health
        g = self._settings.gateway(gateway.mode)
        waiting = h.state in health.LOGIN_STATES
        next_restart, next_cold = lifecycle.next_restarts(self._settings, self._wallclock())
        return GatewayStatus(
            mode=gateway.mode.value,
            state=h.state,
            api_port=g.api_port,
            relay_port=g.relay_port if self._settings.relay_enabled else 0,
            api_up=h.last_probe is not None and h.last_probe.outcome.alive,
            last_probe_timestamp=self._wall(h.last_probe_at),
            last_probe_latency_s=h.last_probe.latency_s if h.last_probe else 0.0,
            last_success_timestamp=self._wall(h.last_success_at),
            probes_total=h.probes_total,
            probe_failures_total=h.probe_failures_total,
            consecutive_failures=h.consecutive_failures,
            recoveries=dict(h.recoveries),
            ready_timestamp=self._wall(h.ready_at),
            login_wait_s=(self._clock() - h.since) if waiting else 0.0,
            detail=h.detail,
            twofa_deadline_timestamp=self._wall(h.twofa_deadline),
            next_restart_timestamp=next_restart,
            next_cold_restart_timestamp=next_cold,
            soft_restart_timestamp=self._wall(h.soft_restart_at),
            restart_reason=h.restart_reason if h.state is State.RESTARTING else "",
            read_only_api=self._settings.read_only_api,
            login_failures=h.login_failures,
            login_failed_reason=h.detail if h.state is State.LOGIN_FAILED else "",
        )

    def _snapshot(self) -> Status:
        gateways = tuple(self._gateway_status(g) for g in self._gateways.values())
        worst = max(
            (g.state for g in gateways), key=STATE_SEVERITY.__getitem__, default=State.STARTING
        )
        if self._stopping:
            worst = State.STOPPING
        pids = {
            c.name.removeprefix("ibc-"): c.main_pid
            for c in self._components
            if c.name.startswith("ibc-") and c.main_pid
        }
        return Status(
            instance=self._names.instance,
            version=__version__,
            trading_mode=self._settings.trading_mode.value,
            state=worst,
            ready=bool(gateways) and all(g.state is State.READY for g in gateways),
            status_text=self._text(gateways),
            started_timestamp=self._started_wall,
            ready_timestamp=self._ready_wall,
            gateways=gateways,
            components=self._components,
            reloads_total=self._reloads,
            reload_failures_total=self._reload_failures,
            gateway_version=self._versions[0],
            ibc_version=self._versions[1],
            gateway_pids=pids,
            reloading=self._reloading,
        )

    def _text(self, gateways: tuple[GatewayStatus, ...]) -> str:
        if self._stopping:
            return "stopping"
        if not gateways:
            return self._status_text or "starting"

        wall = self._wallclock()

        def one(g: GatewayStatus) -> str:
            gateway = self._gateways.get(g.mode)
            attempt = health.next_attempt_at(gateway.health, self._policy()) if gateway else 0.0
            return lifecycle.gateway_text(g, wall, self._wall(attempt))

        if len(gateways) == 1:
            return one(gateways[0])
        return "; ".join(f"{g.mode}: {one(g)}" for g in gateways)

    def _set_text(self, text: str) -> None:
        self._status_text = text
        self._notifier.send(notify.status(text))

    def _publish(self) -> None:
        status = self._snapshot()
        if status.ready and not self._ready_sent:
            self._ready_sent = True
            self._ready_wall = self._wallclock()
            status = replace(status, ready_timestamp=self._ready_wall)
            self._notifier.send(notify.ready(status.status_text))
            log.info("event=ready time_to_ready_s=%.3f", status.time_to_ready_s)
        elif status.status_text != self._status.status_text:
            self._notifier.send(notify.status(status.status_text))
        changed = status != self._status
        self._status = status
        if changed:
            for callback in self._subscribers:
                callback(status)

    # ---- status.Controller -----------------------------------------------------------------

    def status(self) -> Status:
        return self._status

    def subscribe(self, callback: Callable[[Status], None]) -> None:
        self._subscribers.append(callback)

    def reload(self) -> list[str]:
        try:
            new = self._load_settings()
        except Exception:
            self._reload_failures += 1
            self._publish()
            raise
        self._reloading = True
        self._notifier.send(notify.reloading())
        self._publish()
        try:
            return self._apply_settings(new)
        finally:
            self._reloading = False
            self._reloads += 1
            self._status = replace(self._status, reloading=True)  # force a publish
            self._publish()
            self._notifier.send(notify.ready(self._status.status_text))

    def _apply_settings(self, new: Settings) -> list[str]:
        digests = self._files.write(new)
        wanted = static_specs(new, self._names, self._paths, digests)
        old_relays = relay_specs(self._settings, self._names)
        new_relays = relay_specs(new, self._names)
        self._settings = new
        changed: list[str] = []
        for component, old in list(self._specs.items()):
            if wanted.get(component) != old:
                self._stop_units([old])
                del self._specs[component]
                if component not in wanted:
                    changed.append(component)
        for mode in [m for m in self._gateways if m not in {g.mode.value for g in new.gateways}]:
            gateway = self._gateways.pop(mode)
            if gateway.follower:
                gateway.follower.stop()
            if gateway.timer:
                GLib.source_remove(gateway.timer)
        for gw in new.gateways:
            if gw.mode.value not in self._gateways:
                gateway = _Gateway(gw.mode, Health(since=self._clock()))
                self._gateways[gw.mode.value] = gateway
                self._watch_log(gateway)
                self._schedule_probe(gateway, STARTUP_PROBE_S)
        jobs: list[str] = []
        for component, unit_spec in wanted.items():
            if component not in self._specs:
                jobs.append(self._start_unit(unit_spec))
                self._specs[component] = unit_spec
                changed.append(component)
        for component, running in list(self._relays_running.items()):
            if new_relays.get(component) != running or old_relays.get(component) != running:
                self._stop_units([running])
                del self._relays_running[component]
                if component in new_relays:
                    jobs.append(self._start_unit(new_relays[component]))
                    self._relays_running[component] = new_relays[component]
                changed.append(component)
        # The reload is over (READY=1, `systemctl reload` returns) once the restarted units run.
        if jobs:
            self._units.wait_jobs(jobs, STOP_TIMEOUT_S)
        log.info("event=reloaded changed=%s", ",".join(changed) or "-")
        return changed

    def _gateways_for(self, mode: str) -> list[_Gateway]:
        if not mode:
            return list(self._gateways.values())
        if mode not in self._gateways:
            raise NotReadyError(
                f"no {mode} gateway in trading mode {self._settings.trading_mode.value}"
            )
        return [self._gateways[mode]]

    def restart(self, hard: bool, mode: str) -> str:
        """Hard: restart the IBC unit (a new login). Soft: IBC's RESTART, which the Gateway
        carries out at the start of the next minute without a new login; only once logged in
        (before that IBC acknowledges it and does nothing). Returns what happens, and when."""
        gateways = self._gateways_for(mode)
        if not hard:
            for gateway in gateways:
                if gateway.health.state not in (State.READY, State.DEGRADED):
                    raise NotReadyError(
                        f"the {gateway.mode.value} gateway is not logged in "
                        f"({gateway.health.state.value}): a soft restart needs a logged-in "
                        "Gateway; use a hard restart (a new login)"
                    )
        replies = []
        for gateway in gateways:
            if hard:
                gateway.health = health.admin_retry(gateway.health, self._clock())
                self._apply(gateway, gateway.health, [Action.STOP_RELAY])
                self._restart_unit(self._specs[f"ibc-{gateway.mode.value}"])
                replies.append(f"{gateway.mode.value}: hard restart (a new login)")
            else:
                at = self._soft_restart(gateway)
                when = schedule.time12_at(at, self._settings.time_zone)
                left = lifecycle.duration_text(at - self._wallclock())
                replies.append(f"{gateway.mode.value}: soft restart at {when} (in {left})")
        self._publish()
        return "; ".join(replies)

    def _soft_restart(self, gateway: _Gateway) -> float:
        """Send RESTART; returns the Unix time IBC said the Gateway restarts (the next minute)."""
        port = self._settings.gateway(gateway.mode).command_port
        reply = send_command("127.0.0.1", port, "RESTART", COMMAND_TIMEOUT_S, wait_for="RESTART at")
        wall = self._wallclock()
        at = 0.0
        if reply.startswith("RESTART at "):
            text = reply.removeprefix("RESTART at ")
            at = schedule.reply_time(wall, text, self._settings.time_zone)
        if not at:
            at = schedule.next_minute(wall)
        log.info("event=soft_restart mode=%s at=%.0f reply=%r", gateway.mode.value, at, reply)
        gateway.health = health.soft_restart_accepted(gateway.health, self._clock() + at - wall)
        return at

    def reconnect(self, what: str, mode: str) -> None:
        command = {"data": "RECONNECTDATA", "account": "RECONNECTACCOUNT"}[what]
        gateways = self._gateways_for(mode)
        for gateway in gateways:
            # Before the Gateway's main window exists IBC's RECONNECTDATA kills the JVM (exit
            # 76) and RECONNECTACCOUNT blocks: only a ready gateway gets them.
            if gateway.health.state not in (State.READY, State.DEGRADED):
                raise NotReadyError(
                    f"the {gateway.mode.value} gateway is not ready "
                    f"({gateway.health.state.value}): reconnect {what} is possible once it is "
                    "ready"
                )
        for gateway in gateways:
            send_command(
                "127.0.0.1",
                self._settings.gateway(gateway.mode).command_port,
                command,
                COMMAND_TIMEOUT_S,
            )


def ensure_dir(path: Path, uid: int, gid: int, mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)
