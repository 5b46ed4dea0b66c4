"""Screenshot of an instance's X display as PNG.

`python3 -m ibgwd.screenshot OUT.png` runs inside a short-lived unit of the instance (as the
gateway user, with the display's DISPLAY and XAUTHORITY): it reads the root window with
python-xlib and writes a PNG. The daemon hands the bytes to `ibgwdctl screenshot` over D-Bus,
so only those allowed to manage ibgwd (root, group ibgwd) ever see the Gateway's screen.
The PNG encoder is pure and small: truecolour, 8 bits per channel, one zlib stream.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Sequence
from typing import Literal

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """PNG of `rgb` (width*height*3 bytes, rows top to bottom)."""
    stride = width * 3
    if width <= 0 or height <= 0 or len(rgb) != stride * height:
        raise ValueError(f"{len(rgb)} bytes is not a {width}x{height} RGB image")
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def _shift(mask: int) -> int:
    return (mask & -mask).bit_length() - 1 if mask else 0


def rgb_from_zpixmap(
    width: int,
    height: int,
    data: bytes,
    bytes_per_line: int,
    bits_per_pixel: int,
    masks: Sequence[int],
    little_endian: bool = True,
) -> bytes:
    """RGB bytes of an X ZPixmap image with 32 or 24 bits per pixel (TrueColor visuals)."""
    if bits_per_pixel not in (24, 32):
        raise ValueError(f"unsupported {bits_per_pixel} bits per pixel")
    step = bits_per_pixel // 8
    order: Literal["little", "big"] = "little" if little_endian else "big"
    shifts = [_shift(m) for m in masks]
    scales = [(m >> s) or 1 for m, s in zip(masks, shifts, strict=True)]
    out = bytearray(width * height * 3)
    fast = step == 4 and little_endian and list(masks) == [0xFF0000, 0xFF00, 0xFF]
    i = 0
    for y in range(height):
        row = data[y * bytes_per_line : y * bytes_per_line + width * step]
        if fast:  # BGRX, what Xvfb gives at depth 24
            out[i : i + width * 3 : 3] = row[2::4]
            out[i + 1 : i + width * 3 : 3] = row[1::4]
            out[i + 2 : i + width * 3 : 3] = row[0::4]
            i += width * 3
            continue
        for x in range(width):
            pixel = int.from_bytes(row[x * step : x * step + step], order)
            for c in range(3):
                out[i] = ((pixel & masks[c]) >> shifts[c]) * 255 // scales[c]
                i += 1
    return bytes(out)


FAMILY_WILD = 0xFFFF  # libXau's wildcard address family (ibgwd/isolation/xauth.py writes it)


def _accept_wildcard_cookie() -> None:
    """python-xlib matches Xauthority entries by exact family and address only, while libXau
    (Xvfb, x11vnc, the Gateway's JVM) also takes FamilyWild, the one entry ibgwd writes for
    the instance's display: fall back to it when no exact entry matches."""
    from Xlib import error, xauth  # type: ignore[import-untyped,import-not-found,unused-ignore]

    exact = xauth.Xauthority.get_best_auth
    if getattr(exact, "ibgwd_wildcard", False):
        return

    def get_best_auth(
        self: object, family: int, address: bytes, dispno: int, *args: object
    ) -> tuple[bytes, bytes]:
        try:
            return exact(self, family, address, dispno, *args)  # type: ignore[no-any-return]
        except error.XNoAuthError:
            return exact(self, FAMILY_WILD, b"", dispno, *args)  # type: ignore[no-any-return]

    get_best_auth.ibgwd_wildcard = True  # type: ignore[attr-defined]
    xauth.Xauthority.get_best_auth = get_best_auth


def capture() -> bytes:
    """PNG of the whole root window of $DISPLAY."""
    from Xlib import X, display  # type: ignore[import-untyped,import-not-found,unused-ignore]

    _accept_wildcard_cookie()
    d = display.Display()
    try:
        screen = d.screen()
        root = screen.root
        geometry = root.get_geometry()
        width, height = int(geometry.width), int(geometry.height)
        image = root.get_image(0, 0, width, height, X.ZPixmap, 0xFFFFFFFF)
        visual = next(
            v
            for depth in screen.allowed_depths
            for v in depth.visuals
            if v.visual_id == screen.root_visual
        )
        bpp = next(
            f.bits_per_pixel for f in d.display.info.pixmap_formats if f.depth == image.depth
        )
        data = bytes(image.data)
        bytes_per_line = len(data) // height
        little = d.display.info.image_byte_order == X.LSBFirst
        masks = (visual.red_mask, visual.green_mask, visual.blue_mask)
        rgb = rgb_from_zpixmap(width, height, data, bytes_per_line, bpp, masks, little)
    finally:
        d.close()
    return encode_png(width, height, rgb)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python3 -m ibgwd.screenshot OUT.png", file=sys.stderr)
        return 64
    try:
        png = capture()
    except Exception as exc:  # reported in the unit's journal and by the D-Bus caller
        print(f"screenshot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 69
    fd = os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(png)
    print(f"screenshot: {len(png)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
