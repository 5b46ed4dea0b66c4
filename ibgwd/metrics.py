"""Prometheus metrics: families built per scrape from the status snapshot, served over HTTP.

The supervisor publishes immutable `Status` snapshots; a scrape reads the latest one through a
callable and never takes a lock the supervisor holds. Probe latencies, which a snapshot cannot
carry as a distribution, go through `ProbeRecorder`: copy-on-write, so scrapes read without locks.
The same listener answers `/livez` and `/readyz` (JSON, 200 or 503) for container health checks
and Kubernetes probes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ibgwd.config.kinds import split_host_port
from ibgwd.errors import ConfigError, Problem
from ibgwd.names import METRIC_PREFIX
from ibgwd.status import GatewayStatus, State, Status

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

GATEWAY_PROCESS_NAMESPACE = "ibgateway"
METRICS_ADDRESS_SETTING = "METRICS_ADDRESS"
METRICS_ADDRESS_ACCEPTED = (
    "ADDRESS:PORT with an IP literal and PORT 1-65535, e.g. 127.0.0.1:9108, [::1]:9108, "
    "0.0.0.0:9108 or [::]:9108; empty = off"
)

# Recovery kinds exported as 0 before they first happen ("avoid missing metrics"). Kinds the
# supervisor reports beyond these are exported too; add a kind here when the supervisor gains one.
KNOWN_RECOVERY_KINDS = ("soft_restart", "unit_restart", "watchdog", "login_failed")

# systemd ActiveState values (systemd 252), exported as a state set per component.
UNIT_ACTIVE_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating")

# Loopback TWS handshake takes about 0.2 ms; the probe timeout is a few seconds.
DEFAULT_PROBE_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# A scrape that stalls mid-request must not pin a thread forever.
HTTP_REQUEST_TIMEOUT_S = 10.0


def _name(suffix: str) -> str:
    return f"{METRIC_PREFIX}_{suffix}"


# --- probe latency histogram -------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyHistogram:
    """An immutable histogram: per-bucket counts (last = above every bound), sum and count."""

    bounds_s: tuple[float, ...]
    counts: tuple[int, ...]
    sum_s: float = 0.0

    @classmethod
    def empty(cls, bounds_s: Sequence[float]) -> LatencyHistogram:
        bounds = tuple(sorted(float(b) for b in bounds_s))
        return cls(bounds_s=bounds, counts=(0,) * (len(bounds) + 1))

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observed(self, seconds: float) -> LatencyHistogram:
        index = next((i for i, b in enumerate(self.bounds_s) if seconds <= b), len(self.bounds_s))
        counts = list(self.counts)
        counts[index] += 1
        return replace(self, counts=tuple(counts), sum_s=self.sum_s + seconds)

    def cumulative(self) -> list[tuple[str, float]]:
        """Buckets as Prometheus wants them: (le, cumulative count), ending with +Inf."""
        result: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds_s, math.inf), self.counts, strict=True):
            running += n
            result.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return result


class ProbeRecorder:
    """Where the supervisor reports each API probe; the collector turns it into a histogram.

    `observe` may be called from any thread (writers serialise on a lock only writers take);
    scrapes read the current immutable mapping without locking.
    """

    def __init__(self, buckets_s: Sequence[float] = DEFAULT_PROBE_BUCKETS_S) -> None:
        self._empty = LatencyHistogram.empty(buckets_s)
        self._histograms: Mapping[str, LatencyHistogram] = MappingProxyType({})
        self._write_lock = threading.Lock()

    def observe(self, mode: str, seconds: float, ok: bool) -> None:
        """Record one probe of `mode`'s API that took `seconds`.

        Only successful probes are latency samples: a failure's duration is the timeout or an
        instant refusal, which says nothing about latency. Failures are counted from the
        snapshot (`GatewayStatus.probe_failures_total`).
        """
        if not ok or not math.isfinite(seconds) or seconds < 0:
            return
        with self._write_lock:
            current = self._histograms
            updated = dict(current)
            updated[mode] = current.get(mode, self._empty).observed(seconds)
            self._histograms = MappingProxyType(updated)

    def histogram(self, mode: str) -> LatencyHistogram:
        return self._histograms.get(mode, self._empty)


# --- the snapshot collector ----------------------------------------------------------------------


class StatusCollector(Collector):
    """Yields fresh `ibgwd_*` families from the latest `Status` on each scrape."""

    def __init__(self, status: Callable[[], Status], recorder: ProbeRecorder | None = None) -> None:
        self._status = status
        self._recorder = recorder if recorder is not None else ProbeRecorder()

    def collect(self) -> Iterable[Metric]:
        snapshot = self._status()  # read the reference once: every family shows one snapshot
        yield from _instance_families(snapshot)
        yield from _gateway_families(snapshot.gateways, self._recorder)
        yield from _component_families(snapshot)


def _instance_families(s: Status) -> Iterable[Metric]:
    yield InfoMetricFamily(
        METRIC_PREFIX,
        "ibgwd build and configuration: versions of ibgwd, the Gateway and IBC, trading mode.",
        value={
            "version": s.version,
            "instance_name": s.instance,
            "trading_mode": s.trading_mode,
            "gateway_version": s.gateway_version,
            "ibc_version": s.ibc_version,
        },
    )
    state = GaugeMetricFamily(
        _name("state"),
        "Supervisor state of the instance (the worst of its gateways), one series per state.",
        labels=["state"],
    )
    for value in State:
        state.add_metric([value.value], 1.0 if value is s.state else 0.0)
    yield state
    yield GaugeMetricFamily(
        _name("ready"), "1 when every gateway's API answered the full check.", value=float(s.ready)
    )
    yield GaugeMetricFamily(
        _name("start_time_seconds"),
        "Unix time ibgwd started this run.",
        value=s.started_timestamp,
    )
    time_to_ready = GaugeMetricFamily(
        _name("time_to_ready_seconds"),
        "Seconds from start to the first READY of this run; absent until then.",
        labels=[],
    )
    if s.ready_timestamp:
        time_to_ready.add_metric([], s.time_to_ready_s)
    yield time_to_ready
    yield CounterMetricFamily(
        _name("reloads_total"), "Reload requests handled.", value=s.reloads_total
    )
    yield CounterMetricFamily(
        _name("reload_failures_total"),
        "Reload requests refused (invalid settings; nothing was changed).",
        value=s.reload_failures_total,
    )


def _gateway_families(
    gateways: Sequence[GatewayStatus], recorder: ProbeRecorder
) -> Iterable[Metric]:
    mode = ["mode"]
    info = InfoMetricFamily(
        _name("gateway"), "A gateway (trading mode) and its ports.", labels=mode
    )
    state = GaugeMetricFamily(
        _name("gateway_state"),
        "Supervisor state of a gateway, one series per state.",
        labels=["mode", "state"],
    )
    ready_ts = GaugeMetricFamily(
        _name("gateway_ready_timestamp_seconds"),
        "Unix time the gateway last became ready, 0 = not yet.",
        labels=mode,
    )
    login_wait = GaugeMetricFamily(
        _name("login_wait_seconds"),
        "Seconds spent logging in and waiting for 2FA on the current login.",
        labels=mode,
    )
    api_up = GaugeMetricFamily(
        _name("api_up"), "1 when the last TWS API probe succeeded.", labels=mode
    )
    probes = CounterMetricFamily(_name("api_probes"), "TWS API probes made.", labels=mode)
    failures = CounterMetricFamily(
        _name("api_probe_failures"), "TWS API probes that failed.", labels=mode
    )
    consecutive = GaugeMetricFamily(
        _name("api_consecutive_failures"), "TWS API probes failed in a row.", labels=mode
    )
    last_probe = GaugeMetricFamily(
        _name("api_last_probe_timestamp_seconds"),
        "Unix time of the last TWS API probe, 0 = never.",
        labels=mode,
    )
    last_success = GaugeMetricFamily(
        _name("api_last_success_timestamp_seconds"),
        "Unix time of the last successful TWS API probe, 0 = never.",
        labels=mode,
    )
    last_duration = GaugeMetricFamily(
        _name("api_last_probe_duration_seconds"),
        "Duration of the last TWS API probe.",
        labels=mode,
    )
    duration = HistogramMetricFamily(
        _name("api_probe_duration_seconds"),
        "Duration of successful TWS API probes (handshake and server-version answer).",
        labels=mode,
    )
    recoveries = CounterMetricFamily(
        _name("recoveries"),
        "Recovery actions taken, by kind (soft_restart, unit_restart, watchdog, ...).",
        labels=["mode", "kind"],
    )
    lifecycle = _lifecycle_families(gateways)
    for g in gateways:
        m = [g.mode]
        info.add_metric(m, {"api_port": str(g.api_port), "relay_port": str(g.relay_port)})
        for value in State:
            state.add_metric([g.mode, value.value], 1.0 if value is g.state else 0.0)
        ready_ts.add_metric(m, g.ready_timestamp)
        login_wait.add_metric(m, g.login_wait_s)
        api_up.add_metric(m, float(g.api_up))
        probes.add_metric(m, g.probes_total)
        failures.add_metric(m, g.probe_failures_total)
        consecutive.add_metric(m, g.consecutive_failures)
        last_probe.add_metric(m, g.last_probe_timestamp)
        last_success.add_metric(m, g.last_success_timestamp)
        last_duration.add_metric(m, g.last_probe_latency_s)
        hist = recorder.histogram(g.mode)
        duration.add_metric(m, hist.cumulative(), hist.sum_s)
        counts = {kind: 0 for kind in KNOWN_RECOVERY_KINDS} | dict(g.recoveries)
        for kind, n in sorted(counts.items()):
            recoveries.add_metric([g.mode, kind], n)
    yield from (info, state, ready_ts, login_wait, api_up, probes, failures, consecutive)
    yield from (last_probe, last_success, last_duration, duration, recoveries)
    yield from lifecycle


def _lifecycle_families(gateways: Sequence[GatewayStatus]) -> list[Metric]:
    """The Gateway's schedule, 2FA deadline, login failures and read-only API, per mode."""
    mode = ["mode"]
    next_restart = GaugeMetricFamily(
        _name("gateway_next_restart_timestamp_seconds"),
        "Unix time of the Gateway's next daily restart (no new login), 0 = none.",
        labels=mode,
    )
    next_login = GaugeMetricFamily(
        _name("gateway_next_full_login_timestamp_seconds"),
        "Unix time of the next weekly full login (2FA): Sunday's cold restart.",
        labels=mode,
    )
    soft = GaugeMetricFamily(
        _name("gateway_soft_restart_timestamp_seconds"),
        "Unix time a soft restart accepted by IBC takes effect, 0 = none pending.",
        labels=mode,
    )
    twofa = GaugeMetricFamily(
        _name("twofa_deadline_timestamp_seconds"),
        "Unix time the pending 2FA prompt expires, 0 = no prompt pending.",
        labels=mode,
    )
    login_failures = CounterMetricFamily(
        _name("login_failures"),
        "Login failed dialogs (one per failed login); logins stop after one until an admin acts.",
        labels=mode,
    )
    read_only = GaugeMetricFamily(
        _name("gateway_read_only_api"),
        "1 when API clients cannot place orders (READ_ONLY_API=yes), 0 when they can "
        "(READ_ONLY_API=no); absent when unset (the Gateway's own setting).",
        labels=mode,
    )
    for g in gateways:
        m = [g.mode]
        next_restart.add_metric(m, g.next_restart_timestamp)
        next_login.add_metric(m, g.next_cold_restart_timestamp)
        soft.add_metric(m, g.soft_restart_timestamp)
        twofa.add_metric(m, g.twofa_deadline_timestamp)
        login_failures.add_metric(m, g.login_failures)
        if g.read_only_api is not None:
            read_only.add_metric(m, float(g.read_only_api))
    return [next_restart, next_login, soft, twofa, login_failures, read_only]


def _component_families(s: Status) -> Iterable[Metric]:
    label = ["component"]
    up = GaugeMetricFamily(
        _name("component_up"), "1 when the component's unit is active.", labels=label
    )
    state = GaugeMetricFamily(
        _name("component_state"),
        "systemd ActiveState of the component's unit, one series per state.",
        labels=["component", "state"],
    )
    restarts = CounterMetricFamily(
        _name("component_restarts"),
        "Restarts of the component (systemd NRestarts plus restarts ibgwd ordered).",
        labels=label,
    )
    for c in s.components:
        up.add_metric([c.name], float(c.up))
        states: tuple[str, ...] = UNIT_ACTIVE_STATES
        if c.active_state not in states:
            states = (*states, c.active_state)
        for value in states:
            state.add_metric([c.name, value], 1.0 if value == c.active_state else 0.0)
        restarts.add_metric([c.name], c.restarts)
    yield from (up, state, restarts)


# --- the Gateway JVM's process metrics ------------------------------------------------------


def _stat(pid: int, proc: str) -> tuple[str, int] | None:
    """(comm, resident pages) of a process from /proc/PID/stat; None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        return comm, int(stat[stat.rindex(")") + 2 :].split()[21])
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int, proc: str) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"{proc}/{pid}/task/{tid}/children", encoding="ascii") as f:
                out += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def gateway_jvm(launcher: int, proc: str = "/proc") -> int | None:
    """The Gateway's JVM among the descendants of IBC's launcher (the IBC unit's main process).

    ibcstart.sh keeps running around Java (restart loop, forwarding SIGTERM), so the unit's main
    process is the script, not the JVM. The JVM is the descendant named `java`; failing that (a
    wrapper that renames it), the descendant with the largest resident set: the script's other
    children are short helpers. None while no JVM runs, e.g. between IBC's relaunches."""
    seen: set[int] = set()
    todo = _children(launcher, proc)
    found: list[tuple[bool, int, int]] = []  # (named java, resident pages, pid)
    while todo:
        pid = todo.pop()
        if pid in seen or len(seen) > 1000:
            continue
        seen.add(pid)
        stat = _stat(pid, proc)
        if stat is not None:
            found.append((stat[0] == "java", stat[1], pid))
            todo += _children(pid, proc)
    return max(found)[2] if found else None


class GatewayProcessCollector(Collector):
    """`ibgateway_process_*{mode}` for each gateway JVM, via prometheus_client's ProcessCollector.

    ``pids`` gives each mode's IBC launcher (the IBC unit's MainPID); the JVM under it is looked
    up at every scrape, since IBC relaunches Java under the same launcher. ProcessCollector reads
    one pid and has no labels, so this runs one per mode and adds the `mode` label. A mode
    without a running JVM simply has no series.
    """

    def __init__(self, pids: Callable[[], Mapping[str, int]], proc: str = "/proc") -> None:
        self._pids = pids
        self._proc = proc

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for mode, launcher in sorted(self._pids().items()):
            pid = gateway_jvm(launcher, self._proc) if launcher > 0 else None
            if pid is None:
                continue
            one = ProcessCollector(
                namespace=GATEWAY_PROCESS_NAMESPACE,
                pid=_constant(pid),
                proc=self._proc,
                registry=cast(CollectorRegistry, None),  # not registered anywhere
            )
            for family in one.collect():
                target = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "mode": mode}, sample.value)
        return list(merged.values())


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def build_registry(
    status: Callable[[], Status],
    recorder: ProbeRecorder | None = None,
    *,
    proc: str = "/proc",
    own_process: bool = True,
) -> CollectorRegistry:
    """The registry ibgwd serves: snapshot metrics, the Gateway JVMs and (optionally) ibgwd's own
    `process_*` metrics. Never the global REGISTRY."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(status, recorder))
    registry.register(GatewayProcessCollector(lambda: status().gateway_pids, proc=proc))
    if own_process:
        ProcessCollector(proc=proc, registry=registry)
    return registry


# --- health endpoints: /livez and /readyz ------------------------------------------------------

LIVEZ_PATH = "/livez"
READYZ_PATH = "/readyz"
# How long /livez waits for ibgwd's main loop to run a no-op before calling it stuck. The loop
# answers in microseconds when idle; a probe (HTTP, Docker, Kubernetes) times out after 1-5 s.
LOOP_RESPONSE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HealthAnswer:
    """An HTTP status code and the JSON body of a health endpoint."""

    code: int
    body: Mapping[str, object]

    @property
    def ok(self) -> bool:
        return self.code == 200


def liveness(status: Status, loop_responds: bool) -> HealthAnswer:
    """/livez: 200 while ibgwd's loop makes progress and the instance has not failed.

    Nothing about the Gateway's API: a gateway that is logging in, waiting for 2FA or being
    recovered is ibgwd doing its job, and restarting ibgwd's container for it would cost a
    full login (2FA). Only a stuck loop or a supervisor that gave up (FAILED) is not alive.
    """
    if not loop_responds:
        reason = f"ibgwd's main loop did not respond within {LOOP_RESPONSE_TIMEOUT_S:g} s"
        return HealthAnswer(503, {"status": "failed", "reason": reason})
    if status.state is State.FAILED:
        return HealthAnswer(503, {"status": "failed", "reason": status.status_text})
    return HealthAnswer(200, {"status": "ok"})


def readiness(status: Status) -> HealthAnswer:
    """/readyz: 200 when every gateway of the instance is ready (its API answered the full
    check), else 503 with the status text and each gateway's state."""
    gateways = {g.mode: g.state.value for g in status.gateways}
    if status.ready and status.state is State.READY:
        return HealthAnswer(200, {"status": "ok", "gateways": gateways})
    return HealthAnswer(
        503, {"status": "not ready", "reason": status.status_text, "gateways": gateways}
    )


def glib_loop_probe(timeout_s: float = LOOP_RESPONSE_TIMEOUT_S) -> Callable[[], bool]:
    """A check that the GLib main loop ibgwd runs on (the default context) dispatches: it queues
    a no-op there and waits for it. Costs nothing between requests (no timer, no wake-ups)."""
    from gi.repository import GLib

    def responds() -> bool:
        done = threading.Event()

        def run() -> bool:
            done.set()
            return False  # once

        GLib.idle_add(run, priority=GLib.PRIORITY_HIGH)
        return done.wait(timeout_s)

    return responds


class Health:
    """The answers of /livez and /readyz from the latest snapshot and a loop check."""

    def __init__(
        self, status: Callable[[], Status], loop_responds: Callable[[], bool] | None = None
    ) -> None:
        self._status = status
        self._loop_responds = loop_responds if loop_responds is not None else (lambda: True)

    def live(self) -> HealthAnswer:
        responds = self._loop_responds()
        return liveness(self._status(), responds)

    def ready(self) -> HealthAnswer:
        return readiness(self._status())


_REASONS = {200: "200 OK", 405: "405 Method Not Allowed", 503: "503 Service Unavailable"}


def health_app(health: Health, metrics: WSGIApplication) -> WSGIApplication:
    """WSGI app: /livez and /readyz from `health`, every other path to the metrics app."""
    routes = {LIVEZ_PATH: health.live, READYZ_PATH: health.ready}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = routes.get(str(environ.get("PATH_INFO", "")))
        if route is None:
            return metrics(environ, start_response)
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if method not in ("GET", "HEAD"):
            answer = HealthAnswer(405, {"status": "error", "reason": "use GET or HEAD"})
            extra = [("Allow", "GET, HEAD")]
        else:
            answer, extra = route(), []
        body = (json.dumps(answer.body, sort_keys=True) + "\n").encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *extra,
        ]
        start_response(_REASONS.get(answer.code, str(answer.code)), headers)
        return [] if method == "HEAD" else [body]

    return app


# --- METRICS_ADDRESS ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    host: str  # an IPv4 or IPv6 literal, without brackets
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_metrics_address(value: str) -> ListenAddress | None:
    """Parse METRICS_ADDRESS: `ipv4:port` or `[ipv6]:port`; "" disables metrics (None).

    The same language the settings loader validates (config.kinds.split_host_port)."""
    text = value.strip()
    if not text:
        return None
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        problem = Problem(METRICS_ADDRESS_SETTING, value, METRICS_ADDRESS_ACCEPTED, str(exc))
        raise ConfigError([problem]) from None
    return ListenAddress(host, port)


# --- the HTTP server ----------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    timeout = HTTP_REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics request " + format, *args)


class _MetricsHTTPServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per request; no reverse DNS lookup when binding."""

    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn (reverse DNS), which can hang; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("metrics request failed client=%s", client_address, exc_info=True)


class MetricsServer:
    """Serves a registry on `/metrics` over HTTP (IPv4 or IPv6) from a background thread, and
    `/livez` and `/readyz` when given a `Health`.

    prometheus_client 0.16's start_http_server returns no handle to stop it, so this builds the
    same WSGI app on wsgiref with a stoppable accept loop that wakes only for requests.
    """

    def __init__(
        self, registry: CollectorRegistry, address: ListenAddress, health: Health | None = None
    ) -> None:
        self._registry = registry
        self._address = address
        self._health = health
        self._httpd: _MetricsHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def from_setting(
        cls, registry: CollectorRegistry, value: str, health: Health | None = None
    ) -> MetricsServer | None:
        """A server for a METRICS_ADDRESS value, or None when metrics are disabled."""
        address = parse_metrics_address(value)
        return None if address is None else cls(registry, address, health)

    @property
    def address(self) -> ListenAddress:
        """The bound address once started (with the real port when 0 was asked for)."""
        if self._httpd is None:
            return self._address
        host, port = self._httpd.server_address[:2]
        return ListenAddress(str(host), int(port))

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> None:
        """Bind and serve. Raises ConfigError naming METRICS_ADDRESS if it cannot listen."""
        if self._httpd is not None:
            return
        try:
            family, sockaddr = _resolve(self._address)
            server_class = type("_Server", (_MetricsHTTPServer,), {"address_family": family})
            app = make_wsgi_app(self._registry)
            if self._health is not None:
                app = health_app(self._health, app)
            httpd: WSGIServer = make_server(
                sockaddr[0],
                sockaddr[1],
                app,
                server_class=server_class,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise ConfigError(
                [
                    Problem(
                        METRICS_ADDRESS_SETTING,
                        str(self._address),
                        METRICS_ADDRESS_ACCEPTED,
                        f"cannot listen: {exc.strerror or exc}",
                    )
                ]
            ) from None
        httpd.timeout = None  # handle_request blocks until a request or stop()
        self._httpd = cast(_MetricsHTTPServer, httpd)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._serve, name="ibgwd-metrics", args=(self._httpd,), daemon=True
        )
        self._thread.start()
        log.info("metrics serving address=%s", self.address)

    def _serve(self, httpd: _MetricsHTTPServer) -> None:
        while not self._stopping.is_set():
            httpd.handle_request()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, wait for the accept loop to end and release the port. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        # On Linux, shutting down a listening socket wakes a thread blocked in poll/accept.
        with contextlib.suppress(OSError):
            httpd.socket.shutdown(socket.SHUT_RDWR)
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("metrics accept loop did not stop timeout_s=%s", timeout_s)
        httpd.server_close()
        self._httpd = self._thread = None
        log.info("metrics stopped")

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _resolve(address: ListenAddress) -> tuple[socket.AddressFamily, tuple[str, int]]:
    infos = socket.getaddrinfo(
        address.host,
        address.port,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
    )
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))
