"""Blocking API probes, run off the main loop: handshake liveness and the full readiness check."""

from __future__ import annotations

import enum
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ibgwd.probes import codec


class Outcome(enum.Enum):
    OK = "ok"  # the API answered
    REFUSED = "refused"  # nothing listens: gateway down, logging in or restarting
    TIMEOUT = "timeout"  # accepted but no answer in time: hung
    RESET = "reset"  # closed during the handshake: rejected or initialising
    CLIENT_ID_BUSY = "client_id_busy"  # answered, but the reserved client id is in use (alive)
    ERROR = "error"  # anything else (protocol violation, unreachable)

    @property
    def alive(self) -> bool:
        return self in (Outcome.OK, Outcome.CLIENT_ID_BUSY)


@dataclass(frozen=True)
class ProbeResult:
    outcome: Outcome
    latency_s: float
    server_version: int = 0
    detail: str = ""


class _Deadline:
    def __init__(self, timeout_s: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._end = clock() + timeout_s

    def remaining(self) -> float:
        left = self._end - self._clock()
        if left <= 0:
            raise TimeoutError("probe deadline passed")
        return left


def _read_messages(
    sock: socket.socket, reader: codec.FrameReader, deadline: _Deadline
) -> list[list[str]]:
    while True:
        sock.settimeout(deadline.remaining())
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("peer closed the connection")
        messages = reader.feed(data)
        if messages:
            return messages


def _connect(host: str, port: int, deadline: _Deadline) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=deadline.remaining())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _handshake(sock: socket.socket, reader: codec.FrameReader, deadline: _Deadline) -> int:
    sock.sendall(codec.hello())
    first = _read_messages(sock, reader, deadline)
    return codec.parse_server_hello(first[0]).server_version


def _classify(exc: BaseException) -> Outcome:
    if isinstance(exc, ConnectionRefusedError):
        return Outcome.REFUSED
    if isinstance(exc, TimeoutError | socket.timeout):
        return Outcome.TIMEOUT
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return Outcome.RESET
    return Outcome.ERROR


def probe_handshake(
    host: str, port: int, timeout_s: float, clock: Callable[[], float] = time.monotonic
) -> ProbeResult:
    """Liveness: ``API\\0`` + version range, read the server version, close. Uses no client id."""
    start = clock()
    deadline = _Deadline(timeout_s, clock)
    try:
        with _connect(host, port, deadline) as sock:
            version = _handshake(sock, codec.FrameReader(), deadline)
    except (OSError, codec.ProtocolError) as exc:
        return ProbeResult(_classify(exc), clock() - start, detail=type(exc).__name__)
    return ProbeResult(Outcome.OK, clock() - start, server_version=version)


def probe_full(
    host: str,
    port: int,
    client_id: int,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Readiness: handshake, startApi with a reserved client id, nextValidId, managedAccounts and a
    reqCurrentTime round trip. Error 326 (client id in use) means the API thread answered."""
    start = clock()
    deadline = _Deadline(timeout_s, clock)
    reader = codec.FrameReader()
    try:
        with _connect(host, port, deadline) as sock:
            version = _handshake(sock, reader, deadline)
            sock.sendall(codec.start_api(client_id))
            seen: set[int] = set()
            asked_time = False
            while True:
                for fields in _read_messages(sock, reader, deadline):
                    msg_id = int(fields[0]) if fields and fields[0].isdigit() else -1
                    if msg_id == codec.MSG_ERROR and codec.ERR_CLIENT_ID_IN_USE in _codes(fields):
                        return ProbeResult(
                            Outcome.CLIENT_ID_BUSY, clock() - start, version, "client id in use"
                        )
                    if (
                        msg_id == codec.MSG_MANAGED_ACCOUNTS
                        and any(a for a in (fields[2] if len(fields) > 2 else "").split(","))
                    ) or msg_id == codec.MSG_NEXT_VALID_ID:
                        seen.add(msg_id)
                    elif msg_id == codec.MSG_CURRENT_TIME and asked_time:
                        sock.shutdown(socket.SHUT_WR)
                        return ProbeResult(Outcome.OK, clock() - start, version)
                if not asked_time and {codec.MSG_NEXT_VALID_ID, codec.MSG_MANAGED_ACCOUNTS} <= seen:
                    sock.sendall(codec.req_current_time())
                    asked_time = True
    except (OSError, codec.ProtocolError, ValueError) as exc:
        return ProbeResult(_classify(exc), clock() - start, detail=type(exc).__name__)


def _codes(fields: list[str]) -> set[int]:
    return {int(f) for f in fields[1:5] if f.lstrip("-").isdigit()}
