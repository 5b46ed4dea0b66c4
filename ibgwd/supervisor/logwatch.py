"""Follows a child unit's journal (journalctl --follow) and hands each line to a callback."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable

from gi.repository import GLib

log = logging.getLogger(__name__)


class JournalFollower:
    """One `journalctl -f` per IBC unit: IBC reports login, 2FA and restarts only in its log."""

    def __init__(self, unit: str, on_line: Callable[[str], None]) -> None:
        self._unit = unit
        self._on_line = on_line
        self._proc: subprocess.Popen[bytes] | None = None
        self._watch = 0
        self._buffer = b""

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["journalctl", "--follow", "--lines=0", "--output=cat", f"--unit={self._unit}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0"},
        )
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._watch = GLib.io_add_watch(
            self._proc.stdout.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, self._readable
        )

    def _readable(self, fd: int, condition: int) -> bool:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            self._watch = 0
            return False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._on_line(line.decode("utf-8", "replace"))
        return True

    def stop(self) -> None:
        if self._watch:
            GLib.source_remove(self._watch)
            self._watch = 0
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
