"""Crafting image files byte by byte for the tests of the image reader: PNGs of any bit depth and colour
type (16-bit grey, 16-bit RGB), and PNGs whose header declares a size their data does not hold (a
decompression bomb costs a few bytes to declare)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, GREY_ALPHA, RGBA = 0, 2, 4, 6


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, depth: int, color_type: int, pixels: np.ndarray | None = None) -> bytes:
    """A PNG file: IHDR as given; IDAT holds `pixels` ([H, W] or [H, W, C], big-endian at 16 bit) or, when
    None, almost nothing (a header that declares more than the file holds)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    if pixels is None:
        raw = b"\0" * 16
    else:
        dtype = ">u2" if depth == 16 else "u1"
        rows = np.asarray(pixels).astype(dtype).reshape(height, -1)
        raw = b"".join(b"\0" + r.tobytes() for r in rows)  # filter type 0 per row
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def write_png(path, width, height, depth, color_type, pixels=None) -> str:
    with open(path, "wb") as f:
        f.write(png_bytes(width, height, depth, color_type, pixels))
    return str(path)
