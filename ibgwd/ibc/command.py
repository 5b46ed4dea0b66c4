"""Client for IBC's line-oriented command server (STOP, RESTART, RECONNECTDATA, ...)."""

from __future__ import annotations

import contextlib
import logging
import socket

from ibgwd.errors import CommandError

log = logging.getLogger(__name__)

COMMANDS = ("STOP", "RESTART", "PAUSE", "RECONNECTDATA", "RECONNECTACCOUNT")


def send_command(host: str, port: int, command: str, timeout_s: float = 5.0) -> str:
    """Send one command and return IBC's final reply text (after ``OK``).

    IBC answers ``OK <info>`` or ``ERROR <info>`` (``INFO`` lines are intermediate). RESTART and
    PAUSE may send a second OK line; the first final reply is enough to know it was accepted.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown IBC command {command!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(command.encode("ascii") + b"\n")
            buffer = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                buffer += chunk
                for line in buffer.decode("utf-8", "replace").splitlines():
                    word, _, info = line.strip().partition(" ")
                    if word.upper() == "OK":
                        log.info("ibc_command=%s port=%d reply=OK %s", command, port, info)
                        with contextlib.suppress(OSError):
                            sock.sendall(b"EXIT\n")
                        return info
                    if word.upper() == "ERROR":
                        raise CommandError(f"IBC refused {command}: {info}")
    except OSError as exc:
        raise CommandError(
            f"IBC command server on port {port} did not answer {command}: {exc}"
        ) from exc
    raise CommandError(f"IBC command server on port {port} closed without replying to {command}")
