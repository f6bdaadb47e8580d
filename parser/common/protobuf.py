"""Protocol-buffer messages written by hand: varints and length-delimited fields are all
profile.proto, the push requests and OTLP's profiles need (field numbers are in each
writer), which does not justify a protobuf dependency and generated code."""

from __future__ import annotations

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
