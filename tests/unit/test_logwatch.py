"""JournalFollower: sd-journal's descriptor drives it on the GLib loop; lines reach the callback.

The journal itself is faked here (the host has no journald); the system tests run the real
reader under systemd: every login and 2FA state they see comes through it.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from gi.repository import GLib

from ibgwd.supervisor.logwatch import JournalFollower, message_text


class FakeReader:
    """The slice of systemd.journal.Reader the follower uses; a pipe stands in for inotify."""

    def __init__(self, reliable: bool = True) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.entries: list[dict[str, Any]] = [{"MESSAGE": "old line, before start"}]
        self.position = 0
        self.matches: list[dict[str, str]] = []
        self.boot = False
        self.closed = False
        self.processed = 0
        self.reliable = reliable

    # what the follower calls
    def this_boot(self) -> None:
        self.boot = True

    def add_match(self, **match: str) -> None:
        self.matches.append(match)

    def seek_tail(self) -> None:
        self.position = len(self.entries)

    def get_previous(self) -> dict[str, Any]:
        return self.entries[-1] if self.entries else {}

    def fileno(self) -> int:
        return self.read_fd

    def reliable_fd(self) -> bool:
        return self.reliable

    def process(self) -> int:
        self.processed += 1
        with contextlib.suppress(BlockingIOError):
            os.read(self.read_fd, 4096)
        return 1

    def get_next(self) -> dict[str, Any]:
        if self.position >= len(self.entries):
            return {}
        self.position += 1
        return self.entries[self.position - 1]

    def close(self) -> None:
        self.closed = True
        os.close(self.read_fd)
        os.close(self.write_fd)

    # what journald would do
    def append(self, message: object) -> None:
        self.entries.append({"MESSAGE": message})
        os.write(self.write_fd, b"x")


def run_loop_until(predicate: Any, timeout: float = 5.0) -> None:
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        context.iteration(False)
        time.sleep(0.005)


def test_only_new_lines_of_the_unit_this_boot_reach_the_callback_on_the_main_loop() -> None:
    reader = FakeReader()
    lines: list[str] = []
    follower = JournalFollower(
        "ibgwd-default-ibc-paper.service", lines.append, reader_factory=lambda: reader
    )
    follower.start()
    assert reader.matches == [{"_SYSTEMD_UNIT": "ibgwd-default-ibc-paper.service"}]
    assert reader.boot
    reader.append("IBC: Login has completed")
    reader.append(b"\xffnot utf-8")
    assert lines == []  # nothing is delivered outside the loop
    run_loop_until(lambda: len(lines) == 2)
    assert lines == ["IBC: Login has completed", "\ufffdnot utf-8"]
    assert reader.processed >= 1
    follower.stop()
    assert reader.closed


def test_a_failing_callback_does_not_end_the_watch() -> None:
    reader = FakeReader()
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "bad":
            raise ValueError("boom")

    follower = JournalFollower("u.service", on_line, reader_factory=lambda: reader)
    follower.start()
    reader.append("bad")
    run_loop_until(lambda: seen == ["bad"])
    reader.append("good")
    run_loop_until(lambda: seen == ["bad", "good"])
    assert seen == ["bad", "good"]
    follower.stop()


def test_a_callback_that_stops_the_follower_ends_delivery() -> None:
    reader = FakeReader()
    seen: list[str] = []
    follower: JournalFollower

    def on_line(line: str) -> None:
        seen.append(line)
        follower.stop()

    follower = JournalFollower("u.service", on_line, reader_factory=lambda: reader)
    follower.start()
    reader.entries += [{"MESSAGE": "one"}, {"MESSAGE": "two"}]
    os.write(reader.write_fd, b"x")
    run_loop_until(lambda: bool(seen))
    assert seen == ["one"]
    assert reader.closed


def test_an_unreliable_descriptor_is_polled_as_well() -> None:
    reader = FakeReader(reliable=False)
    seen: list[str] = []
    follower = JournalFollower("u.service", seen.append, reader_factory=lambda: reader)
    follower.start()
    reader.entries.append({"MESSAGE": "no wake-up for this one"})  # no write to the pipe
    run_loop_until(lambda: bool(seen), timeout=3)
    assert seen == ["no wake-up for this one"]
    follower.stop()


def test_message_text_handles_str_bytes_and_missing() -> None:
    assert message_text("a") == "a"
    assert message_text(b"b\xff") == "b\ufffd"
    assert message_text(None) == ""
