"""Protocol-buffer messages written by hand: varints and length-delimited fields are all
profile.proto, the push requests and OTLP's profiles need (field numbers are in each
writer), which does not justify a protobuf dependency and generated code."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_U64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """Base-128 varint; a negative int64 as its two's complement (10 bytes)."""
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def int_field(field: int, value: int) -> bytes:
    """A varint field; 0 is the default and is left out."""
    return varint(field << 3) + varint(value) if value else b""


def fixed64_field(field: int, value: int) -> bytes:
    """A fixed64 field (OTLP's times); 0 is left out."""
    return varint(field << 3 | 1) + (value & _U64).to_bytes(8, "little") if value else b""


def message(field: int, payload: bytes) -> bytes:
    """A length-delimited field: a message, a string or packed varints."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def string(field: int, text: str) -> bytes:
    """A string field; '' is left out."""
    return message(field, text.encode("utf-8", "surrogateescape")) if text else b""


def packed(field: int, values: list[int]) -> bytes:
    """Packed repeated varints; none is left out."""
    return message(field, b"".join(varint(v) for v in values)) if values else b""


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of `values` (int64; a negative one as its two's complement) as a varint, all
    at once: their bytes one after the other (uint8), and how many bytes each took."""
    import numpy as np

    v = np.ascontiguousarray(values, np.int64).view(np.uint64)
    sizes = np.ones(len(v), np.int64)
    for k in range(1, 10):
        sizes += v >= np.uint64(1) << np.uint64(7 * k)
    widest = int(sizes.max()) if len(v) else 0
    columns = np.empty((len(v), widest), np.uint8)
    for k in range(widest):
        digit = (v >> np.uint64(7 * k)) & np.uint64(0x7F)
        columns[:, k] = digit | np.where(k < sizes - 1, np.uint64(0x80), np.uint64(0))
    return columns[np.arange(widest) < sizes[:, None]], sizes
