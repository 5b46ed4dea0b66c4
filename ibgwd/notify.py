"""sd_notify: readiness, status, reload, stopping and watchdog messages to systemd."""

from __future__ import annotations

import os
import time
from typing import Protocol

import sdnotify


class Notifier(Protocol):
    def send(self, message: str) -> None: ...


class SystemdNotifier:
    """Sends to $NOTIFY_SOCKET; a no-op when there is none (not started by systemd)."""

    def __init__(self) -> None:
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier()

    def send(self, message: str) -> None:
        if self._enabled:
            self._notifier.notify(message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def ready(status: str) -> str:
    return f"READY=1\nSTATUS={_one_line(status)}"


def status(text: str) -> str:
    return f"STATUS={_one_line(text)}"


def reloading() -> str:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={usec}"


def stopping(text: str) -> str:
    return f"STOPPING=1\nSTATUS={_one_line(text)}"


def watchdog() -> str:
    return "WATCHDOG=1"


def extend_timeout(seconds: float) -> str:
    return f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}"


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of WatchdogSec= when systemd armed a watchdog for this process, else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000 / 2
