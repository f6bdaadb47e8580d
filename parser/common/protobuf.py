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
    at once: their bytes one after the other (uint8), and how many bytes each took.
    A row of bytes per value, as wide as the widest, made a column at a time in place
    (most values are a byte or two: the widths stop where no value needs more)."""
    import numpy as np

    v = np.ascontiguousarray(values, np.int64).view(np.uint64)
    sizes = np.ones(len(v), np.uint8)
    longer = v >= np.uint64(1 << 7)
    for k in range(2, 11):
        if not longer.any():
            break
        sizes += longer
        if k < 10:
            np.greater_equal(v, np.uint64(1 << 7 * k), out=longer)
    widest = int(sizes.max()) if len(v) else 0
    rows = np.empty((len(v), widest), np.uint8)
    digit = np.empty(len(v), np.uint64)
    for k in range(widest):
        np.right_shift(v, np.uint64(7 * k), out=digit)
        np.bitwise_and(digit, np.uint64(0x7F), out=digit)
        if k + 1 < widest:  # the continuation bit of a value with more bytes
            np.bitwise_or(digit, (sizes > k + 1).astype(np.uint64) << np.uint64(7), out=digit)
        rows[:, k] = digit
    if widest > 1:
        return rows[np.arange(widest, dtype=np.uint8) < sizes[:, None]], sizes.astype(np.int64)
    return rows.reshape(-1), sizes.astype(np.int64)
