"""The pixels of Chromium's screenshots, decoded here so that no image library is needed."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def png_pixels(path: Path) -> np.ndarray:
    """(height, width, channels) uint8 pixels of an 8-bit non-interlaced RGB or RGBA PNG
    (what Chromium's screenshots are), decoded with zlib and the five PNG row filters."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    pos, idat = 8, b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, "unexpected PNG layout"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    channels = 3 if color == 2 else 4
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width * channels + 1)
    out = np.zeros((height + 1, width * channels), np.uint8)  # row 0: the zero row above
    for y, (kind, line) in enumerate(zip(rows[:, 0].tolist(), rows[:, 1:], strict=True), 1):
        up = out[y - 1]
        if kind == 0:
            out[y] = line
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            out[y] = np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:
            out[y] = line + up
        else:  # Average and Paeth depend on the byte to the left: byte by byte
            row, above = bytearray(line.tobytes()), up.tolist()
            for i in range(len(row)):
                left = row[i - channels] if i >= channels else 0
                corner = above[i - channels] if i >= channels else 0
                if kind == 3:
                    row[i] = (row[i] + (left + above[i]) // 2) & 0xFF
                else:
                    p = left + above[i] - corner
                    pa, pb, pc = abs(p - left), abs(p - above[i]), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else above[i] if pb <= pc else corner
                    row[i] = (row[i] + pred) & 0xFF
            out[y] = np.frombuffer(bytes(row), np.uint8)
    return out[1:].reshape(height, width, channels)


def assert_not_blank(png: Path) -> None:
    """At least 1% of the pixels differ from the commonest colour, in at least 8 colours."""
    pixels = png_pixels(png)[:, :, :3].reshape(-1, 3)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colors[counts.argmax()]
    other = np.any(pixels != background, axis=1).mean()
    assert other >= 0.01 and len(colors) >= 8, (
        f"{png} looks blank: {other:.2%} of its pixels differ from {background.tolist()},"
        f" {len(colors)} colours"
    )
