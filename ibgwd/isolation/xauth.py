"""The X display's MIT-MAGIC-COOKIE-1: Xvfb runs with `-auth FILE` and every X client of the
instance (IBC and the Gateway, x11vnc, hooks) gets the same file, so a process without the
cookie (another local user) is refused by the X server itself."""

from __future__ import annotations

import secrets
import struct

FAMILY_WILD = 0xFFFF  # matches any address: the cookie is tied to the display number only
PROTOCOL = b"MIT-MAGIC-COOKIE-1"
COOKIE_BYTES = 16


def new_cookie() -> bytes:
    return secrets.token_bytes(COOKIE_BYTES)


def _field(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def xauthority(display: int, cookie: bytes) -> bytes:
    """One Xauthority entry (libXau's format: family, address, display number, name, data)."""
    return (
        struct.pack(">H", FAMILY_WILD)
        + _field(b"")
        + _field(str(display).encode())
        + _field(PROTOCOL)
        + _field(cookie)
    )


def as_text(data: bytes) -> str:
    """For the file writer, which takes text: bytes that survive encode('utf-8',
    'surrogateescape') unchanged."""
    return data.decode("utf-8", "surrogateescape")
