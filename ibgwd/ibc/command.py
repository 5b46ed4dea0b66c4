"""Client for IBC's line-oriented command server (STOP, RESTART, RECONNECTDATA, ...)."""

from __future__ import annotations

import contextlib
import logging
import socket

from ibgwd.errors import CommandError

log = logging.getLogger(__name__)

COMMANDS = ("STOP", "RESTART", "PAUSE", "RECONNECTDATA", "RECONNECTACCOUNT")


def send_command(
    host: str, port: int, command: str, timeout_s: float = 5.0, *, wait_for: str = ""
) -> str:
    """Send one command and return IBC's final reply text (after ``OK``).

    IBC answers ``OK <info>`` or ``ERROR <info>`` (``INFO`` lines are intermediate). RESTART and
    PAUSE send a second OK line (``OK RESTART at hh:mm AM``, `RestartTask.java:124`): with
    `wait_for` ("RESTART at"), the OK line starting with it is returned; if the channel closes
    or times out after another OK line, that one is returned.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown IBC command {command!r}")
    accepted: str | None = None
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(command.encode("ascii") + b"\n")
            buffer = b""
            seen = 0
            done = False
            while not done:
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    if accepted is not None:
                        break
                    raise
                done = not chunk
                buffer += chunk
                lines = buffer.decode("utf-8", "replace").splitlines()
                if not done and not buffer.endswith(b"\n") and lines:
                    lines = lines[:-1]  # a reply still arriving (only the prompt has no newline)
                for line in lines[seen:]:
                    word, _, info = line.strip().partition(" ")
                    if word.upper() == "OK":
                        log.info("ibc_command=%s port=%d reply=OK %s", command, port, info)
                        accepted = info
                        if not wait_for or info.startswith(wait_for):
                            with contextlib.suppress(OSError):
                                sock.sendall(b"EXIT\n")
                            return info
                    if word.upper() == "ERROR":
                        raise CommandError(f"IBC refused {command}: {info}")
                seen = len(lines)
    except OSError as exc:
        if accepted is not None:
            return accepted
        raise CommandError(
            f"IBC command server on port {port} did not answer {command}: {exc}"
        ) from exc
    if accepted is not None:
        return accepted
    raise CommandError(f"IBC command server on port {port} closed without replying to {command}")
