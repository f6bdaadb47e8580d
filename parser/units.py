"""How reports print values: MB (2^20 bytes, one decimal) or whole objects, and shares."""

from __future__ import annotations

MB = 1048576.0


def unit_name(unit: str) -> str:
    """'MB' for a byte index, 'objects' for an object index (FlatCum.unit)."""
    return "objects" if unit == "objects" else "MB"


def format_value(value: float, unit: str) -> str:
    """A value as jeprof prints it: `12.5` (MB) or `1234` (objects, truncated)."""
    return f"{int(value)}" if unit == "objects" else f"{value / MB:.1f}"


def format_labelled(value: float, unit: str) -> str:
    """format_value with its unit: `12.5 MB` or `1234 objects`."""
    return f"{format_value(value, unit)} {unit_name(unit)}"


def format_share(value: float, total: float) -> str:
    """`12.5%`: value's share of total; nan/inf as jeprof prints them when the total is 0."""
    if total == 0:
        return "nan" if value == 0 else "+inf" if value > 0 else "-inf"
    return f"{value * 100.0 / total + 0.0:.1f}%"  # + 0.0: no "-0.0%" for a zero value


def format_amount(value: float, unit: str) -> str:
    """A value with its unit, bytes in the unit that shows them: `512 B`, `25.2 kB`,
    `12.5 MB`, or `1234 objects`."""
    if unit == "objects":
        return f"{int(value)} objects"
    for scale, name in ((MB, "MB"), (1024.0, "kB")):
        if abs(value) >= scale / 10:
            return f"{value / scale:.1f} {name}"
    return f"{int(value)} B"
