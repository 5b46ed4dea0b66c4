"""The imperative shell of supervision: runs units, probes and recovery on the GLib main loop."""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from gi.repository import GLib

from ibgwd import __version__, notify, schedule
from ibgwd.config.model import GatewaySettings, Mode, Settings
from ibgwd.errors import CommandError, NotReadyError
from ibgwd.ibc.command import send_command
from ibgwd.names import InstanceNames
from ibgwd.probes.api import ProbeResult, probe_full, probe_handshake
from ibgwd.status import STATE_SEVERITY, ComponentStatus, GatewayStatus, State, Status
from ibgwd.supervisor import budget, health, ibclog, lifecycle, plan
from ibgwd.supervisor.health import Action, Health, Policy
from ibgwd.supervisor.jobs import GLibScheduler, JobRunner, Wait
from ibgwd.supervisor.logwatch import JournalFollower
from ibgwd.supervisor.plan import StopKind, relay_specs, static_specs
from ibgwd.units import spec as specs
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
# A PAUSE takes effect at the next minute (IBC's RestartTask), then the Gateway shuts down and
# IBC's launcher ends ("IBC is paused"). ibgwd.service's TimeoutStopSec= allows for this bound
# plus STOP_TIMEOUT_S and two CHILD_STOP_S.
PAUSE_SHUTDOWN_S = 60.0
UNIT_TIMEOUT_S = 30.0  # a start or stop job of a child
RETRY_CONVERGE_S = 5.0  # after a start sequence failed (systemd refused or timed out a call)


def guarded(keep: bool) -> Callable[[Callable[..., bool]], Callable[..., bool]]:
    """For main-loop callbacks: an exception is logged and never removes the source (GLib
    drops a source whose callback raised); the supervisor then makes sure probing goes on."""

    def wrap(fn: Callable[..., bool]) -> Callable[..., bool]:
        @functools.wraps(fn)
        def run(self: Supervisor, *args: object) -> bool:
            try:
                return fn(self, *args)
            except Exception:
                log.exception("event=callback_failed callback=%s", fn.__name__)
                self._callback_failures += 1
                self._keep_probing()
                return keep

        return run

    return wrap


class Files(Protocol):
    """Renders and writes what the children read; returns digests per unit component."""

    def write(self, settings: Settings) -> dict[str, str]: ...

    def clear(self) -> None:
        """Remove the rendered files (secrets included) once the children are gone."""


class ProbeObserver(Protocol):
    def observe(self, mode: str, seconds: float, ok: bool) -> None: ...


@dataclass
class _Gateway:
    mode: Mode
    health: Health
    follower: JournalFollower | None = None
    probing: bool = False
    timer: int = 0


__all__ = ["Supervisor", "relay_specs", "static_specs"]


def _modes(gateways: Iterable[GatewaySettings]) -> str:
    return ",".join(g.mode.value for g in gateways)


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
        digest_key: bytes = b"",
        jobs: JobRunner | None = None,
        watchdog_s: float | None = None,
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
        self._halt_reported = False  # READY=1 sent for a start halted by a failed login
        self._ready_wall = 0.0
        self._reloading = False
        self._reloads = 0
        self._reload_failures = 0
        self._stopping = False
        self._status_text = ""
        self._status = self._snapshot()
        self._timers: list[int] = []
        self._poll_pending = False
        self._digest_key = digest_key
        self._jobs = jobs or JobRunner(GLibScheduler(), clock)
        self._units.on_job_removed(self._jobs.job_removed)
        self._watchdog_s = notify.watchdog_interval_s() if watchdog_s is None else watchdog_s
        self._callback_failures = 0
        self._stop_kind: StopKind | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt the children a previous ibgwd left running, converge the rest, arm the timers.

        Units running from the desired spec are kept as they are (the IB session survives a
        crash, restart or upgrade of ibgwd); the others are replaced, leftovers stopped, and
        missing ones started, step by step from JobRemoved."""
        self._set_text("starting display and gateway")
        digests = self._files.write(self._settings)
        self._specs = static_specs(self._settings, self._names, self._paths, digests)
        relays = relay_specs(self._settings, self._names)
        convergence = self._convergence()
        for unit_spec in convergence.adopt:
            log.info("event=unit_adopted unit=%s", unit_spec.name)
            if unit_spec.component in relays:
                self._relays_running[unit_spec.component] = unit_spec
        for unit_spec in convergence.replace:
            log.info("event=unit_differs unit=%s action=replace", unit_spec.name)
        for name in convergence.stop:
            log.info("event=leftover_unit unit=%s action=stop", name)
        now = self._clock()
        for gw in self._settings.gateways:
            adopted = convergence.verdict(f"ibc-{gw.mode.value}") is plan.Verdict.ADOPT
            detail = "adopted a running Gateway" if adopted else ""
            self._gateways[gw.mode.value] = _Gateway(
                gw.mode, Health(since=now, ibc_alive=adopted, detail=detail)
            )
        self._jobs.submit(
            "start",
            self._start_steps(convergence),
            done=self._unit_changed,
            failed=self._start_failed,
        )
        for gateway in self._gateways.values():
            self._watch_log(gateway)
            # An adopted Gateway is probed at once: ready again within a probe's time.
            adopted = gateway.health.ibc_alive
            self._schedule_probe(gateway, 0.0 if adopted else STARTUP_PROBE_S)
        self._timers.append(GLib.timeout_add(int(UNIT_POLL_S * 1000), self._poll_units))
        self._timers.append(GLib.timeout_add(int(TICK_S * 1000), self._tick))
        if self._watchdog_s:  # half of WatchdogSec=, at most a tick
            period = min(self._watchdog_s, TICK_S)
            self._timers.append(GLib.timeout_add(int(period * 1000), self._watchdog))
        self._units.on_change(self._unit_changed)
        self._publish()

    def _convergence(self) -> plan.Convergence:
        observed = [
            plan.Observed(u.name, u.alive, plan.digest_of(u.description))
            for u in self._units.list_units(self._names.unit_prefix(), fresh=True)
        ]
        relays = relay_specs(self._settings, self._names)
        return plan.converge(self._specs, relays, observed, self._digest_key)

    def _start_failed(self, error: BaseException) -> None:
        """A start step failed (systemd refused or did not answer): converge again soon, from
        what runs then, instead of sitting without a Gateway."""
        log.error("event=start_failed error=%s retry_s=%.0f", error, RETRY_CONVERGE_S)
        GLib.timeout_add(int(RETRY_CONVERGE_S * 1000), self._converge_again)

    @guarded(keep=False)
    def _converge_again(self) -> bool:
        if not self._stopping:
            self._jobs.submit(
                "converge",
                self._start_steps(self._convergence()),
                done=self._unit_changed,
                failed=self._start_failed,
            )
        return False

    def _start_steps(self, convergence: plan.Convergence) -> list[Callable[[], Wait | None]]:
        """Stop what differs, then start what is missing, hooks at the old image's points.

        A hook stage runs only when the units it accompanies start now (not on adoption)."""
        steps: list[Callable[[], Wait | None]] = []
        gone = [*convergence.stop, *(s.name for s in convergence.replace)]
        if gone:
            steps.append(lambda: self._stop_step(gone))
        fresh = [*convergence.start, *convergence.replace]
        display = [s for s in fresh if s.component == "display"]
        rest = [s for s in fresh if s.component != "display"]
        if display:
            steps.append(lambda: self._hook_step(Stage.START, wait=True))
            steps.append(lambda: self._start_step(display))
            steps.append(lambda: self._hook_step(Stage.X, wait=True))
        if rest:
            steps.append(lambda: self._start_step(rest))
        if any(s.component.startswith("ibc-") for s in rest):
            # IBC launched, as the old image waited; the hook itself is not waited for.
            steps.append(lambda: self._hook_step(Stage.IBC, wait=False))
        return steps

    def _run_jobs(self, name: str, steps: Sequence[Callable[[], Wait | None]]) -> None:
        """Queue a sequence; a look at the units follows it (their signals were not acted on)."""
        self._jobs.submit(name, steps, done=self._unit_changed)

    def _start_step(self, unit_specs: Sequence[UnitSpec]) -> Wait:
        return Wait.for_jobs([self._start_unit(s) for s in unit_specs], UNIT_TIMEOUT_S)

    def _stop_step(self, names: Iterable[str]) -> Wait:
        return Wait.for_jobs([self._units.stop(n) for n in names], STOP_TIMEOUT_S)

    def _hook_step(self, stage: Stage, *, wait: bool) -> Wait | None:
        """Run a hook directory's scripts; like the old image, a failure does not stop startup."""
        unit_spec = self._hook(stage)
        if unit_spec is None:
            return None
        self._set_text(f"running {stage.value.upper()}_SCRIPTS")
        job = self._start_unit(unit_spec)
        if not wait or not job:
            return None
        return Wait(
            frozenset({job}),
            until=None,
            timeout_s=HOOK_TIMEOUT_S,
        )

    def stop(self, kind: StopKind = StopKind.STOP, done: Callable[[], None] | None = None) -> None:
        """End supervision. DETACH leaves every child running for the next ibgwd to adopt;
        STOP sends IBC STOP, PAUSE (a system shutdown) sends IBC PAUSE so the Gateway keeps its
        restart token; then relays, IBC, the rest and the display go, in that order. `done`
        runs once it is over (the steps run from the main loop, never nested)."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_kind = kind
        self._jobs.cancel()
        for timer in self._timers:
            GLib.source_remove(timer)
        self._timers.clear()
        for gateway in self._gateways.values():
            if gateway.timer:
                GLib.source_remove(gateway.timer)
                gateway.timer = 0
            if gateway.follower:
                gateway.follower.stop()
        if kind is StopKind.DETACH:
            log.info("event=detach units=%d", len(self._all()))
            self._notifier.send(notify.stopping("restarting ibgwd; the Gateway keeps running"))
            self._publish()
            if done:
                done()
            return
        for gateway in self._gateways.values():
            gateway.health = replace(gateway.health, state=State.STOPPING)
        verb = "PAUSE" if kind is StopKind.PAUSE else "STOP"
        self._notifier.send(notify.stopping(f"stopping: sending {verb} to IBC"))
        self._publish()
        self._jobs.submit("stop", self._stop_sequence(kind), done=done)

    def _stop_sequence(self, kind: StopKind) -> list[Callable[[], Wait | None]]:
        # Children are ordered Before= ibgwd: while systemd stops ibgwd (and at a shutdown),
        # their stop jobs wait for ibgwd to exit. So no step waits for a stop job: relays are
        # signalled directly (clients get refused from now on), IBC gets PAUSE or STOP and the
        # steps wait for processes to end; systemd stops what is left once ibgwd has exited.
        ibc = {s.name for s in self._specs.values() if s.component.startswith("ibc-")}
        rest = [s for s in self._all() if s.component != "display"]
        display = [s for s in self._specs.values() if s.component == "display"]

        def first() -> Wait:
            for relay in self._relays_running.values():
                self._units.kill(relay.name, signal.SIGTERM)
            paused = [gw for gw in self._settings.gateways if self._pause(gw.mode, kind)]
            for gw in self._settings.gateways:
                if gw not in paused:
                    self._command(gw.command_port, "STOP", gw.mode.value)
            bound = STOP_TIMEOUT_S
            if paused:
                # PAUSE applies at the start of the next minute, then the Gateway shuts down.
                bound = 60.0 - time.localtime(self._wallclock()).tm_sec + PAUSE_SHUTDOWN_S
                log.info("event=paused modes=%s wait_s=%.0f", _modes(paused), bound)
            return Wait(until=lambda: not self._alive(ibc), timeout_s=bound)

        def stop_stragglers() -> Wait | None:
            alive = self._alive(ibc)
            if not alive:
                return None
            for gw in self._settings.gateways:
                if self._names.unit("ibc", gw.mode.value) in alive:
                    self._command(gw.command_port, "STOP", gw.mode.value)
            return Wait(until=lambda: not self._alive(ibc), timeout_s=STOP_TIMEOUT_S)

        def terminate(group: list[UnitSpec]) -> Callable[[], Wait]:
            def step() -> Wait:
                names = {s.name for s in group}
                for name in names:
                    self._units.stop(name)

                def gone() -> bool:
                    # Signalled at each look: a unit whose start job was still running at the
                    # first signal may have forked its process since.
                    alive = self._alive(names)
                    for name in alive:
                        self._units.kill(name, signal.SIGTERM)
                    return not alive

                return Wait(until=gone, timeout_s=CHILD_STOP_S)

            return step

        def kill(group: list[UnitSpec]) -> Callable[[], None]:
            def step() -> None:
                for name in self._alive({s.name for s in group}):
                    log.warning("event=child_stop_timeout unit=%s action=sigkill", name)
                    self._units.kill(name, signal.SIGKILL)

            return step

        def finish() -> None:
            self._relays_running.clear()
            self._files.clear()
            self._publish()

        steps: list[Callable[[], Wait | None]] = [first]
        if kind is StopKind.PAUSE:
            steps.append(stop_stragglers)
        steps += [terminate(rest), kill(rest), terminate(display), kill(display), finish]
        return steps

    def _pause(self, mode: Mode, kind: StopKind) -> bool:
        """Send PAUSE when it can work (IBC logged in); False means: STOP instead."""
        gateway = self._gateways.get(mode.value)
        if kind is not StopKind.PAUSE or gateway is None or not gateway.health.ever_ready:
            return False
        try:
            send_command(
                "127.0.0.1", self._settings.gateway(mode).command_port, "PAUSE", COMMAND_TIMEOUT_S
            )
        except CommandError as exc:
            log.warning("event=ibc_pause_failed mode=%s error=%s action=stop", mode.value, exc)
            return False
        return True

    def _command(self, port: int, command: str, mode: str) -> None:
        try:
            send_command("127.0.0.1", port, command, COMMAND_TIMEOUT_S)
        except CommandError as exc:
            log.warning("event=ibc_%s_failed mode=%s error=%s", command.lower(), mode, exc)

    def _alive(self, names: set[str]) -> set[str]:
        """Those of the units that still have a running process.

        Not `UnitInfo.alive`: while systemd stops ibgwd, a child's queued stop job must not
        count, only its processes."""
        units = self._units.list_units(self._names.unit_prefix())
        return {u.name for u in units if u.active_state not in ("inactive", "failed")} & names

    # ---- units ------------------------------------------------------------------------------

    def _start_unit(self, unit_spec: UnitSpec) -> str | None:
        """Start the unit; returns systemd's start job (it may still be running), or None for
        a relay that already runs as desired (adopted from the previous ibgwd)."""
        if self._relays_running.get(unit_spec.component) == unit_spec and self._alive(
            {unit_spec.name}
        ):
            return None
        props = unit_properties(
            unit_spec,
            parent=self._names.service,
            slice_name=self._names.slice,
            description=plan.tagged_description(unit_spec, self._digest_key),
        )
        job = self._units.start_transient(unit_spec.name, props)
        log.info(
            "event=unit_started unit=%s command=%s", unit_spec.name, specs.command_line(unit_spec)
        )
        if unit_spec.component.startswith("ibc-"):
            mode = unit_spec.component.removeprefix("ibc-")
            gateway = self._gateways.get(mode)
            if gateway:
                gateway.health = health.started(gateway.health, self._clock())
                self._publish()  # STATUS "waiting for login" as soon as IBC is launched
        return job

    def _hook(self, stage: Stage) -> UnitSpec | None:
        return hook_spec(self._settings, self._names, self._paths, stage)

    def _stop_units(
        self, unit_specs: Sequence[UnitSpec], then: Callable[[], None] | None = None
    ) -> None:
        """Stop the units (queued behind any other unit sequence: nothing waits here); `then`
        runs once their stop jobs are done."""
        specs_ = list(unit_specs)
        steps: list[Callable[[], Wait | None]] = [lambda: self._stop_counting(specs_)]
        if then is not None:
            callback = then
            steps.append(lambda: callback())
        self._run_jobs("stop " + ",".join(s.component for s in specs_), steps)

    def _stop_counting(self, unit_specs: Sequence[UnitSpec]) -> Wait:
        # systemd's NRestarts starts again at 0 for a re-created transient unit: carry it over so
        # the restart counters exported by metrics and D-Bus never go down.
        units = self._units.list_units(self._names.unit_prefix(), fresh=True)
        seen = {u.name: u.n_restarts for u in units}
        for s in unit_specs:
            if seen.get(s.name):
                self._extra_restarts[s.component] = (
                    self._extra_restarts.get(s.component, 0) + seen[s.name]
                )
        return self._stop_step(s.name for s in unit_specs)

    def _restart_unit(self, unit_spec: UnitSpec) -> None:
        """Stop, then start again once the stop job is done (a queued sequence)."""

        def start() -> Wait | None:
            self._extra_restarts[unit_spec.component] = (
                self._extra_restarts.get(unit_spec.component, 0) + 1
            )
            return self._start_step([unit_spec])

        self._run_jobs(
            f"restart {unit_spec.component}", [lambda: self._stop_counting([unit_spec]), start]
        )

    def _refresh_components(self) -> dict[str, UnitInfo]:
        infos = {u.name: u for u in self._units.list_units(self._names.unit_prefix())}
        self._components = tuple(self._component_status(s, infos.get(s.name)) for s in self._all())
        return infos

    def _unit_changed(self) -> None:
        """A child's state changed: look soon, once for a burst of signals."""
        if not self._poll_pending and not self._stopping:
            self._poll_pending = True
            GLib.timeout_add(UNIT_EVENT_DELAY_MS, self._poll_after_event)

    @guarded(keep=False)
    def _poll_after_event(self) -> bool:
        self._poll_pending = False
        if not self._stopping:
            self._poll_units()
        return False

    @guarded(keep=True)
    def _poll_units(self) -> bool:
        infos = self._refresh_components()
        if self._jobs.busy:
            # Units being stopped and started by a sequence are not failures; the sequence's
            # end brings another look.
            self._publish()
            return True
        now = self._clock()
        for gateway in self._gateways.values():
            ibc = self._specs.get(f"ibc-{gateway.mode.value}")
            info = infos.get(ibc.name) if ibc else None
            alive = info is not None and info.alive
            self._apply(gateway, *health.on_ibc_unit(gateway.health, alive, now, self._policy()))
        self._publish()
        return True

    @guarded(keep=True)
    def _tick(self) -> bool:
        """Deadlines (login timeout, backoff) and the start-timeout extension; no I/O."""
        now = self._clock()
        for gateway in self._gateways.values():
            self._apply(gateway, *health.on_tick(gateway.health, now, self._policy()))
        if not self._ready_sent and not self._stopping:
            waiting = {State.FAILED, State.RATE_LIMITED, State.LOGIN_FAILED}
            states = [g.health.state for g in self._gateways.values()]
            halted = [s for s in states if s in (State.LOGIN_FAILED, State.RATE_LIMITED)]
            if halted and not self._halt_reported:
                # A failed login waits for an admin, a spent recovery budget for its backoff:
                # end the start job (READY=1, STATUS says why) so that `systemctl start`
                # returns, a reload can be queued, and systemd does not time the start out and
                # restart ibgwd into another login attempt.
                self._halt_reported = True
                self._notifier.send(notify.ready(self._status.status_text))
                log.error(
                    "event=start_halted reason=%s status=%r",
                    halted[0].value,
                    self._status.status_text,
                )
            elif all(state not in waiting for state in states):
                self._notifier.send(notify.extend_timeout(TICK_S * 5))
        self._publish()
        return True

    @guarded(keep=True)
    def _watchdog(self) -> bool:
        if self._health_loop_alive(self._clock()):
            self._notifier.send(notify.watchdog())
        return True

    def _health_loop_alive(self, now: float) -> bool:
        """The watchdog is pinged only while every gateway's probes keep completing (and none
        handed over to systemd): a wedged or dead probe loop gets ibgwd restarted, and the
        Gateway survives that."""
        s = self._settings
        bound = max(s.probe_interval_s, STARTUP_PROBE_S) + 2 * s.probe_timeout_s + 2 * TICK_S
        for g in self._gateways.values():
            if g.health.state is State.FAILED:
                return False
            last = max(g.health.last_probe_at, self._started_at)
            if now - last > bound:
                log.warning("event=probe_stalled mode=%s since_s=%.1f", g.mode.value, now - last)
                return False
        return True

    def _safe_line(self, on_line: Callable[[str], None]) -> Callable[[str], None]:
        """A journal line callback that never takes the follower's watch down."""

        def run(line: str) -> None:
            try:
                on_line(line)
            except Exception:
                log.exception("event=callback_failed callback=ibc_log")
                self._callback_failures += 1
                self._keep_probing()

        return run

    def _keep_probing(self) -> None:
        """After a failed callback: every gateway has a probe scheduled or in flight."""
        if self._stopping:
            return
        for gateway in self._gateways.values():
            if not gateway.timer and not gateway.probing:
                self._schedule_probe(gateway, STARTUP_PROBE_S)

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

    @guarded(keep=False)
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
        future.add_done_callback(lambda f: GLib.idle_add(self._probe_finished, gateway, f))
        return False

    @guarded(keep=False)
    def _probe_finished(self, gateway: _Gateway, future: Future[ProbeResult]) -> bool:
        """On the loop: a probe that raised (a bug, not a failed probe) is logged and the
        gateway probed again, never left with `probing` set forever."""
        error = future.exception()
        if error is not None:
            gateway.probing = False
            log.error("event=probe_crashed mode=%s error=%r", gateway.mode.value, error)
            self._keep_probing()
            return False
        return self._probe_done(gateway, future.result())

    @guarded(keep=False)
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
            credentials=self._settings.gateway(gateway.mode).credentials.source,
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

        gateway.follower = JournalFollower(unit, self._safe_line(on_line))
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
            # SIGTERM now (the launcher may be relaunching the Gateway for another login this
            # very moment), then a stop job queued as usual; the flag once more when it is done.
            self._units.kill(ibc.name, signal.SIGTERM)

            def clean() -> None:
                lifecycle.remove_cold_restart_flags(settings_path)

            self._stop_units([ibc], then=clean)
        elif action is Action.SAVE_BUDGET:
            self._save_budget()
        elif action is Action.GIVE_UP:
            log.error("event=give_up mode=%s detail=%r", mode, gateway.health.detail)
            self._notifier.send("WATCHDOG=trigger")

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

    def _publish(self, *, force: bool = False) -> None:
        status = self._snapshot()
        if status.ready and not self._ready_sent:
            self._ready_sent = True
            self._ready_wall = self._wallclock()
            status = replace(status, ready_timestamp=self._ready_wall)
            self._notifier.send(notify.ready(status.status_text))
            log.info("event=ready time_to_ready_s=%.3f", status.time_to_ready_s)
        elif status.status_text != self._status.status_text:
            self._notifier.send(notify.status(status.status_text))
        changed = force or status != self._status
        self._status = status
        if changed:
            for callback in self._subscribers:
                try:
                    callback(status)
                except Exception:  # a subscriber (D-Bus, notifications) never stops supervision
                    log.exception("event=callback_failed callback=subscriber")

    # ---- status.Controller -----------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force (those of the last successful reload)."""
        return self._settings

    def status(self) -> Status:
        return self._status

    def subscribe(self, callback: Callable[[Status], None]) -> None:
        self._subscribers.append(callback)

    def reload(self) -> list[str]:
        """Apply new settings; returns the components that restart. Their stop and start jobs
        run afterwards, step by step: `reloading` stays true (and READY=1 waits) until done."""
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
        except Exception:
            self._reload_done()
            raise

    def _reload_done(self) -> None:
        if not self._reloading:
            return
        self._reloading = False
        self._reloads += 1
        self._publish(force=True)
        self._notifier.send(notify.ready(self._status.status_text))

    def _apply_settings(self, new: Settings) -> list[str]:
        """Plan the change at once (the desired specs are the new ones from here on, so health
        actions meanwhile see a consistent state), then run the stops and starts as one
        sequence behind whatever sequence is running."""
        digests = self._files.write(new)
        wanted = static_specs(new, self._names, self._paths, digests)
        old_relays = relay_specs(self._settings, self._names)
        new_relays = relay_specs(new, self._names)
        self._settings = new
        changed: list[str] = []
        to_stop: list[UnitSpec] = []
        to_start: list[UnitSpec] = []
        for component, old in list(self._specs.items()):
            if wanted.get(component) != old:
                to_stop.append(old)
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
        for mode, gateway in self._gateways.items():
            # "No further login until an admin acts": a reload is that act. The IBC unit was
            # stopped after the failed login; start it again even if its spec is unchanged.
            ibc = self._specs.get(f"ibc-{mode}")
            if gateway.health.state is State.LOGIN_FAILED and ibc is not None:
                gateway.health = health.admin_retry(gateway.health, self._clock())
                to_stop.append(ibc)
                del self._specs[ibc.component]
        for component, unit_spec in wanted.items():
            if component not in self._specs:
                to_start.append(unit_spec)
                self._specs[component] = unit_spec
                changed.append(component)
        for component, running in list(self._relays_running.items()):
            if new_relays.get(component) != running or old_relays.get(component) != running:
                to_stop.append(running)
                del self._relays_running[component]
                if component in new_relays:
                    to_start.append(new_relays[component])
                    self._relays_running[component] = new_relays[component]
                changed.append(component)
        steps: list[Callable[[], Wait | None]] = []
        if to_stop:
            steps.append(lambda: self._stop_counting(to_stop))
        if to_start:
            steps.append(lambda: self._start_step(to_start))

        def done() -> None:
            log.info("event=reloaded changed=%s", ",".join(changed) or "-")
            self._reload_done()
            self._unit_changed()

        self._jobs.submit("reload", steps, done=done)
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
        # IBC restarts at the start of its next minute; its reply names that minute in the
        # Gateway's clock, which is trusted only when it agrees with ours.
        at = schedule.next_minute(wall)
        if reply.startswith("RESTART at "):
            said = schedule.reply_time(
                wall, reply.removeprefix("RESTART at "), self._settings.time_zone
            )
            if said and abs(said - at) <= 120.0:
                at = said
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
