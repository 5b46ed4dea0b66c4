"""Pure encoding and decoding of the TWS API socket protocol (text framing, version < 201)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

API_PREFIX = b"API\0"
# ib_async's range: keeps the text protocol (the binary message ids start at server version 201).
MIN_CLIENT_VERSION = 157
MAX_CLIENT_VERSION = 178

MSG_ERROR = 4
MSG_NEXT_VALID_ID = 9
MSG_MANAGED_ACCOUNTS = 15
MSG_CURRENT_TIME = 49
REQ_CURRENT_TIME = 49
REQ_START_API = 71
ERR_CLIENT_ID_IN_USE = 326


class ProtocolError(ValueError):
    """The peer sent something that is not the TWS API."""


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def hello(min_version: int = MIN_CLIENT_VERSION, max_version: int = MAX_CLIENT_VERSION) -> bytes:
    """The client's first bytes: ``API\\0`` and the offered version range."""
    return API_PREFIX + frame(f"v{min_version}..{max_version}".encode("ascii"))


def fields_message(*fields: object) -> bytes:
    """A framed message of NUL-terminated text fields."""
    return frame(b"".join(str(f).encode("ascii") + b"\0" for f in fields))


def start_api(client_id: int) -> bytes:
    return fields_message(REQ_START_API, 2, client_id, "")


def req_current_time() -> bytes:
    return fields_message(REQ_CURRENT_TIME, 1)


@dataclass
class FrameReader:
    """Accumulates bytes and yields complete messages as lists of text fields."""

    buffer: bytes = b""

    def feed(self, data: bytes) -> list[list[str]]:
        self.buffer += data
        messages: list[list[str]] = []
        while len(self.buffer) >= 4:
            (size,) = struct.unpack(">I", self.buffer[:4])
            if size > 16 * 1024 * 1024:
                raise ProtocolError(f"message length {size} is not plausible")
            if len(self.buffer) < 4 + size:
                break
            payload, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
            text = payload.decode("latin-1")
            parts = text.split("\0")
            if parts and parts[-1] == "":
                parts.pop()
            messages.append(parts)
        return messages


@dataclass(frozen=True)
class ServerHello:
    server_version: int
    connection_time: str


def parse_server_hello(fields: list[str]) -> ServerHello:
    """The server's answer to the hello: exactly two fields, version first."""
    if len(fields) != 2:
        raise ProtocolError(f"expected 2 fields in the server hello, got {len(fields)}")
    try:
        version = int(fields[0])
    except ValueError as exc:
        raise ProtocolError(f"server version {fields[0]!r} is not a number") from exc
    if not MIN_CLIENT_VERSION <= version <= MAX_CLIENT_VERSION:
        raise ProtocolError(f"server version {version} outside the offered range")
    return ServerHello(version, fields[1])
