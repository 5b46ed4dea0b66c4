"""Where the simulation speaks: IBC-formatted stdout lines and the sim-events.log for tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

EVENTS_FILE = "sim-events.log"
ERROR_FRAME = "!" * 80


def ibc_timestamp(now: datetime) -> str:
    """IBC's ``yyyy-MM-dd HH:mm:ss:SSS`` format."""
    return now.strftime("%Y-%m-%d %H:%M:%S:") + f"{now.microsecond // 1000:03d}"


class Console:
    """Java-side console: every line is ``<timestamp> IBC: <message>`` on stdout."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self.now: Callable[[], datetime] = datetime.now  # the simulated clock, once known

    def log(self, message: str) -> None:
        self._stream.write(f"{ibc_timestamp(self.now())} IBC: {message}\n")
        self._stream.flush()

    def raw(self, message: str) -> None:
        self._stream.write(message + "\n")
        self._stream.flush()

    def error(self, message: str) -> None:
        """IBC frames errors with ``!!!`` lines; since 3.24 they go to stdout too."""
        self.raw(ERROR_FRAME)
        self.log(message)
        self.raw(ERROR_FRAME)

    def exception(self, message: str) -> None:
        """Utils.logException without IncludeStackTraceForExceptions: the message only."""
        self.raw(ERROR_FRAME)
        self.log("An exception has occurred:")
        self.raw(message)
        self.raw(ERROR_FRAME)


class EventLog:
    """Append-only ``<unix time> event=<name> key=value`` lines under the settings path."""

    def __init__(self, settings_path: Path) -> None:
        self.path = settings_path / EVENTS_FILE

    def record(self, event: str, **fields: object) -> None:
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(f"{time.time():.3f} event={event}{extra}\n")
        except OSError:
            pass  # the event log is a test aid; never let it break the simulation
