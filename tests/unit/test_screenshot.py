"""The screenshot's PNG encoder and X image conversion (pure), and the capture unit's spec."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from settings_samples import BASE_ENV, load

from ibgwd.dbus.diagnostics import capture_spec
from ibgwd.names import InstanceNames
from ibgwd.screenshot import PNG_SIGNATURE, encode_png, rgb_from_zpixmap
from ibgwd.units.spec import Paths


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """A minimal independent reader: checks every CRC, returns (width, height, rgb)."""
    assert data.startswith(PNG_SIGNATURE)
    pos, idat, header = len(PNG_SIGNATURE), b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", header)
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    assert all(r[0] == 0 for r in rows)
    return width, height, b"".join(r[1:] for r in rows)


def test_png_round_trips_through_an_independent_reader() -> None:
    rgb = bytes(range(256)) * 3 * 2  # 16 x 32 pixels
    png = encode_png(16, 32, rgb)
    assert decode_png(png) == (16, 32, rgb)


def test_png_refuses_a_size_mismatch() -> None:
    with pytest.raises(ValueError, match="4x4"):
        encode_png(4, 4, b"\0" * 10)


def test_bgrx_zpixmap_with_row_padding_becomes_rgb() -> None:
    # 2 x 2 pixels, 32 bpp little endian (B, G, R, X), rows padded to 12 bytes
    rows = [
        bytes([1, 2, 3, 0, 4, 5, 6, 0]) + b"\xee" * 4,
        bytes([7, 8, 9, 0, 10, 11, 12, 0]) + b"\xee" * 4,
    ]
    rgb = rgb_from_zpixmap(2, 2, b"".join(rows), 12, 32, (0xFF0000, 0xFF00, 0xFF))
    assert rgb == bytes([3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10])


def test_other_masks_are_scaled_to_8_bits() -> None:
    # 24 bpp big endian with 5-6-5 style masks in the low 16 bits
    pixel = (0b11111 << 11) | (0b000000 << 5) | 0b01111
    data = pixel.to_bytes(3, "big")
    rgb = rgb_from_zpixmap(1, 1, data, 3, 24, (0xF800, 0x07E0, 0x001F), little_endian=False)
    assert rgb == bytes([255, 0, 15 * 255 // 31])


def test_capture_unit_runs_as_the_gateway_user_on_the_instance_display(tmp_path: Path) -> None:
    settings = load(BASE_ENV, tmp_path)
    names = InstanceNames(settings.instance)
    paths = Paths(runtime_dir=tmp_path / "run", state_dir=tmp_path / "state")
    spec = capture_spec(settings, names, paths, tmp_path / "run" / "screenshot" / "screen.png")
    assert spec.user == "ibgateway"
    assert f"DISPLAY=:{settings.display}" in spec.environment
    assert spec.exec_start[1:4] == ("-P", "-m", "ibgwd.screenshot")
    assert spec.service_type == "oneshot" and spec.timeout_start_s > 0
    assert spec.read_write_paths == (str(tmp_path / "run" / "screenshot"),)
    assert spec.name == "ibgwd-default-screenshot.service"
