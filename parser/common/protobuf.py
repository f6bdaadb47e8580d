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
    Made a byte at a time for the values that have that byte: most values are a byte or
    two, so each pass takes fewer."""
    import numpy as np

    v = np.ascontiguousarray(values, np.int64).reshape(-1).view(np.uint64)
    sizes = np.ones(len(v), np.int64)
    longer = np.flatnonzero(v >= np.uint64(1 << 7))
    for k in range(2, 11):
        if not len(longer):
            break
        sizes[longer] += 1
        if k < 10:
            longer = longer[v[longer] >= np.uint64(1 << 7 * k)]
    out = np.empty(int(sizes.sum()), np.uint8)
    at = np.cumsum(sizes) - sizes
    which = np.arange(len(v))
    for k in range(10):
        if not len(which):
            break
        digit = v[which] >> np.uint64(7 * k) & np.uint64(0x7F)
        more = sizes[which] > k + 1  # the continuation bit of a value with more bytes
        out[at[which] + k] = digit | more.astype(np.uint64) << np.uint64(7)
        which = which[more]
    return out, sizes
