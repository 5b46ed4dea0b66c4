"""The thin shell around events.py: POST to NOTIFY_URL from a worker thread, NOTIFY_COMMAND as a
transient hook unit. Nothing here blocks the supervisor's loop: the webhook runs on its own
thread with a bounded queue, and a command is one StartTransientUnit call (a job, not a wait).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ibgwd import __version__
from ibgwd.config.model import Settings
from ibgwd.names import InstanceNames
from ibgwd.notifications.events import Event, Tracker, test_event
from ibgwd.status import Status
from ibgwd.units.spec import Paths, UnitSpec

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
POST_TIMEOUT_S = 10.0
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)  # then the event is dropped
COMMAND_TIMEOUT_S = 60.0
TICK_S = 5
Property = tuple[str, Any]  # (name, GLib.Variant), as in ibgwd.units.properties


def redacted_url(url: str) -> str:
    """scheme://host[:port]/… for logs: the path and query may carry a token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


Reporter = Callable[[bool, str], None]


class Poster(Protocol):
    def __call__(self, url: str, body: bytes, timeout_s: float) -> int: ...


def http_post(url: str, body: bytes, timeout_s: float) -> int:
    """POST JSON; returns the HTTP status (raises OSError on a network error)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"ibgwd/{__version__}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _retryable(code: int) -> bool:
    return code >= 500 or code in (408, 425, 429)


class WebhookSender:
    """One daemon thread posting events in order; retries with backoff; never blocks put()."""

    def __init__(
        self,
        url: str,
        topic: str = "",
        *,
        post: Poster = http_post,
        sleep: Callable[[float], None] = time.sleep,
        delays: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self.url = url
        self._topic = topic
        self._post = post
        self._sleep = sleep
        self._delays = tuple(delays)
        self._queue: queue.Queue[tuple[Event, Reporter | None] | None] = queue.Queue(QUEUE_SIZE)
        self._stopped = threading.Event()
        self.sent = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="notify-webhook", daemon=True)
        self._thread.start()

    def put(self, event: Event, report: Reporter | None = None) -> None:
        """Queue `event`; `report(ok, detail)` is called from the worker thread once it was
        delivered or given up (a reported event is tried once: someone waits for it)."""
        try:
            self._queue.put_nowait((event, report))
        except queue.Full:
            self.dropped += 1
            log.warning("event=notification_dropped reason=queue_full kind=%s", event.kind.value)
            if report is not None:
                report(False, "the notification queue is full")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, report = item
            ok, detail = self._deliver(event, retry=report is None)
            if report is not None:
                report(ok, detail)

    def _deliver(self, event: Event, retry: bool = True) -> tuple[bool, str]:
        body = json.dumps(event.as_dict(self._topic), ensure_ascii=False).encode("utf-8")
        where = redacted_url(self.url)
        delays = (*self._delays, None) if retry else (None,)
        for attempt, delay in enumerate(delays, start=1):
            try:
                code = self._post(self.url, body, POST_TIMEOUT_S)
                error = f"HTTP {code}"
            except (OSError, ValueError) as exc:  # URLError is an OSError
                code, error = 0, type(exc).__name__
            if 200 <= code < 300:
                self.sent += 1
                log.info("event=notification_sent kind=%s url=%s", event.kind.value, where)
                return True, f"{where} accepted it ({error})"
            if (code and not _retryable(code)) or delay is None or self._stopped.is_set():
                self.dropped += 1
                log.warning(
                    "event=notification_failed kind=%s url=%s error=%s attempts=%d",
                    event.kind.value,
                    where,
                    error,
                    attempt,
                )
                return False, f"{where} failed: {error}"
            log.info(
                "event=notification_retry kind=%s url=%s error=%s in_s=%g",
                event.kind.value,
                where,
                error,
                delay,
            )
            self._sleep(delay)
        return False, f"{where}: not sent"  # not reached: the last delay is None

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop after the queued events (no more retries); waits at most `timeout_s`."""
        self._stopped.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)


def command_spec(
    command: str, event: Event, names: InstanceNames, paths: Paths, settings: Settings, seq: int
) -> UnitSpec:
    """NOTIFY_COMMAND as a oneshot unit of the instance, the event in its environment."""
    env = {"HOME": str(paths.home), "TZ": settings.time_zone, **event.environment()}
    return UnitSpec(
        component="notify",
        name=names.unit("notify", f"{int(event.timestamp)}-{seq}"),
        description=f"ibgwd {names.instance}: NOTIFY_COMMAND for {event.kind.value}",
        exec_start=("/bin/sh", "-c", command),
        environment=tuple(f"{k}={v}" for k, v in env.items()),
        working_directory=str(paths.home),
        service_type="oneshot",
        timeout_start_s=COMMAND_TIMEOUT_S,
    )


@dataclass(frozen=True)
class Targets:
    url: str
    topic: str
    command: str
    after_s: float

    @classmethod
    def of(cls, settings: Settings) -> Targets:
        url = settings.notify_url.reveal() if settings.notify_url else ""
        return cls(url, settings.notify_topic, settings.notify_command, settings.notify_after_s)


class Notifications:
    """Subscribed to the supervisor: derives events and hands them to the webhook and command."""

    def __init__(
        self,
        settings: Settings,
        names: InstanceNames,
        paths: Paths,
        start_unit: Callable[[UnitSpec], None],
        *,
        reload_settings: Callable[[], Settings] | None = None,
        clock: Callable[[], float] = time.time,
        webhook_factory: Callable[[str, str], WebhookSender] = WebhookSender,
    ) -> None:
        self._names = names
        self._paths = paths
        self._start_unit = start_unit
        self._reload_settings = reload_settings
        self._clock = clock
        self._webhook_factory = webhook_factory
        self._settings = settings
        self._targets = Targets.of(settings)
        self._tracker = Tracker(self._targets.after_s)
        self._webhook = (
            webhook_factory(self._targets.url, self._targets.topic) if self._targets.url else None
        )
        self._seq = 0
        self._reloads = -1

    @property
    def enabled(self) -> bool:
        return bool(self._targets.url or self._targets.command)

    def on_status(self, status: Status) -> None:
        if self._reloads >= 0 and status.reloads_total != self._reloads:
            self._reconfigure()
        self._reloads = status.reloads_total
        self._send(self._tracker.observe(status, self._clock()))

    def tick(self) -> bool:
        """GLib timeout callback; keeps running."""
        self._send(self._tracker.tick(self._clock()))
        return True

    def _reconfigure(self) -> None:
        if self._reload_settings is None:
            return
        try:
            settings = self._reload_settings()
        except Exception as exc:  # the supervisor already reported a bad configuration
            log.debug("notifications keep their settings error=%s", type(exc).__name__)
            return
        targets = Targets.of(settings)
        self._settings = settings
        self._tracker.notify_after_s = targets.after_s
        if targets.url != self._targets.url or targets.topic != self._targets.topic:
            if self._webhook:
                self._webhook.close(0.0)
            self._webhook = (
                self._webhook_factory(targets.url, targets.topic) if targets.url else None
            )
        self._targets = targets
        log.info(
            "event=notifications_configured url=%s command=%s",
            bool(targets.url),
            bool(targets.command),
        )

    def _send(self, events: list[Event]) -> None:
        for event in events:
            log.info(
                "event=notification kind=%s mode=%s state=%s message=%r",
                event.kind.value,
                event.mode,
                event.state,
                event.message,
            )
            if self._webhook:
                self._webhook.put(event)
            if self._targets.command:
                self._seq += 1
                spec = command_spec(
                    self._targets.command,
                    event,
                    self._names,
                    self._paths,
                    self._settings,
                    self._seq,
                )
                try:
                    self._start_unit(spec)
                except Exception as exc:  # never let a hook break supervision
                    log.warning("event=notify_command_failed unit=%s error=%s", spec.name, exc)

    def test(
        self,
        status: Status | None,
        report: Reporter,
        call_soon: Callable[[Callable[[], None]], None],
    ) -> None:
        """Send a test event now; `report(ok, detail)` is called on the loop (via call_soon)."""
        if not self.enabled:
            report(False, "no NOTIFY_URL and no NOTIFY_COMMAND set: nothing to send")
            return
        state = status.state.value if status else ""
        event = test_event(self._names.instance, state, self._clock())
        log.info("event=notification kind=test")
        parts: list[str] = []
        ok = True
        if self._targets.command:
            self._seq += 1
            spec = command_spec(
                self._targets.command, event, self._names, self._paths, self._settings, self._seq
            )
            try:
                self._start_unit(spec)
                parts.append(f"NOTIFY_COMMAND started as {spec.name}")
            except Exception as exc:
                ok = False
                parts.append(f"NOTIFY_COMMAND could not start: {exc}")
        if not self._webhook:
            report(ok, "; ".join(parts))
            return

        def webhook_done(sent: bool, detail: str) -> None:  # on the worker thread
            text = "; ".join([f"NOTIFY_URL: {detail}", *parts])
            call_soon(lambda: report(ok and sent, text))

        self._webhook.put(event, webhook_done)

    def close(self) -> None:
        if self._webhook:
            self._webhook.close()


class _Subscribable(Protocol):
    def subscribe(self, callback: Callable[[Status], None]) -> None: ...


class _Units(Protocol):
    def start_transient(self, name: str, properties: list[Property]) -> str: ...


def attach(
    controller: _Subscribable,
    settings: Settings,
    names: InstanceNames,
    paths: Paths,
    units: _Units,
    load: Callable[[], Settings],
) -> Notifications:
    """Wire notifications to the supervisor's snapshots and the main loop's timer."""
    from gi.repository import GLib

    from ibgwd.units.properties import unit_properties

    def start_unit(spec: UnitSpec) -> None:
        props = unit_properties(spec, parent=names.service, slice_name=names.slice)
        units.start_transient(spec.name, props)
        log.info("event=notify_command_started unit=%s", spec.name)

    notifications = Notifications(settings, names, paths, start_unit, reload_settings=load)
    controller.subscribe(notifications.on_status)
    GLib.timeout_add_seconds(TICK_S, notifications.tick)
    return notifications
