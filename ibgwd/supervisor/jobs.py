"""Sequences of systemd jobs, driven step by step from JobRemoved: never a nested loop.

A step does its D-Bus calls (StartTransientUnit, StopUnit, ...) and returns what to wait for:
the jobs systemd queued, and/or a condition polled on a timer. The next step runs from the
main loop once they are done or a timeout passed. One sequence runs at a time, the others
queue behind it, so a reload, a recovery and a relay start never interleave their steps.
An exception in a step is logged and ends only that sequence.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

POLL_MS = 100
FINISHED_KEPT = 512


class Scheduler(Protocol):
    """The main loop's timers (GLib in the daemon, a fake in unit tests)."""

    def timeout_add(self, ms: int, callback: Callable[[], bool]) -> int: ...

    def source_remove(self, source: int) -> None: ...


class GLibScheduler:
    def timeout_add(self, ms: int, callback: Callable[[], bool]) -> int:
        from gi.repository import GLib

        return int(GLib.timeout_add(ms, callback))

    def source_remove(self, source: int) -> None:
        from gi.repository import GLib

        GLib.source_remove(source)


@dataclass(frozen=True)
class Wait:
    """What a step waits for before the next one runs."""

    jobs: frozenset[str] = frozenset()
    until: Callable[[], bool] | None = None  # polled every POLL_MS
    timeout_s: float = 30.0

    @classmethod
    def for_jobs(cls, jobs: Iterable[str | None], timeout_s: float = 30.0) -> Wait:
        return cls(frozenset(j for j in jobs if j), None, timeout_s)


Step = Callable[[], "Wait | None"]


@dataclass
class _Sequence:
    name: str
    steps: deque[Step]
    done: Callable[[], None] | None
    failed: Callable[[BaseException], None] | None = None
    wait: Wait | None = None
    deadline: float = 0.0
    timers: list[int] = field(default_factory=list)


class JobRunner:
    """Runs sequences of steps one after the other; `job_removed` is fed from JobRemoved."""

    def __init__(self, scheduler: Scheduler, clock: Callable[[], float] = time.monotonic) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self._queue: deque[_Sequence] = deque()
        self._current: _Sequence | None = None
        self._finished: dict[str, str] = {}

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._queue)

    def submit(
        self,
        name: str,
        steps: Sequence[Step],
        done: Callable[[], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Queue a sequence; it starts at once (synchronously) when nothing else runs.

        A step that raises ends the sequence: `failed` gets the exception, then `done` runs."""
        self._queue.append(_Sequence(name, deque(steps), done, failed))
        if self._current is None:
            self._next_sequence()

    def cancel(self) -> None:
        """Drop everything queued or waiting (ibgwd is stopping); `done` callbacks are not run."""
        if self._current:
            self._clear_timers(self._current)
        self._current = None
        self._queue.clear()

    def job_removed(self, job: str, result: str) -> None:
        self._finished[job] = result
        if len(self._finished) > FINISHED_KEPT:
            for key in list(self._finished)[: FINISHED_KEPT // 2]:
                del self._finished[key]
        if self._current and self._current.wait and job in self._current.wait.jobs:
            self._check()

    def result(self, job: str) -> str:
        return self._finished.get(job, "timeout")

    # ---- internals ---------------------------------------------------------------------------

    def _next_sequence(self) -> None:
        while self._current is None and self._queue:
            self._current = self._queue.popleft()
            log.debug("event=sequence_start name=%s", self._current.name)
            self._advance()

    def _advance(self) -> None:
        seq = self._current
        while seq is not None and seq is self._current:
            self._clear_timers(seq)
            seq.wait = None
            if not seq.steps:
                self._finish(seq)
                return
            step = seq.steps.popleft()
            try:
                wait = step()
            except Exception as exc:
                log.exception("event=sequence_step_failed name=%s", seq.name)
                seq.steps.clear()
                if seq.failed is not None:
                    try:
                        seq.failed(exc)
                    except Exception:
                        log.exception("event=sequence_failed_callback_failed name=%s", seq.name)
                continue
            if wait is None or self._satisfied(wait):
                continue
            seq.wait = wait
            seq.deadline = self._clock() + wait.timeout_s
            seq.timers.append(self._scheduler.timeout_add(POLL_MS, self._poll))
            return

    def _satisfied(self, wait: Wait) -> bool:
        if wait.jobs - self._finished.keys():
            return False
        if wait.until is None:
            return True
        try:
            return wait.until()
        except Exception:
            log.exception("event=wait_condition_failed")
            return True

    def _poll(self) -> bool:
        """Timer: a condition may have become true, or the step timed out."""
        self._check()
        return self._current is not None and self._current.wait is not None

    def _check(self) -> None:
        seq = self._current
        if seq is None or seq.wait is None:
            return
        if self._satisfied(seq.wait):
            self._advance()
        elif self._clock() >= seq.deadline:
            pending = sorted(seq.wait.jobs - self._finished.keys())
            log.warning(
                "event=sequence_wait_timeout name=%s jobs=%s", seq.name, ",".join(pending) or "-"
            )
            self._advance()

    def _finish(self, seq: _Sequence) -> None:
        self._current = None
        log.debug("event=sequence_done name=%s", seq.name)
        if seq.done is not None:
            try:
                seq.done()
            except Exception:
                log.exception("event=sequence_done_failed name=%s", seq.name)
        self._next_sequence()

    def _clear_timers(self, seq: _Sequence) -> None:
        for timer in seq.timers:
            self._scheduler.source_remove(timer)
        seq.timers.clear()
