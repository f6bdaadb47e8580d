"""Sizes and shares, as the tools read and print them: sizes with explicit units
(budgets); bytes exactly or in a binary unit (the gate, top); bytes in jeprof's MB (2^20
bytes, one decimal) or whole objects (reports), and shares. No numpy: every command line
may import it."""

from __future__ import annotations

import re

from mem_profiler.core.errors import BudgetError

MB = 1048576.0
# The reports name bytes as jeprof and pprof print them, binary multiples under decimal
# names; each report says so once (its legend, its header or its option's help). The gate
# and top write the binary units' own names (KiB, MiB, GiB).
REPORT_UNITS = "kB, MB, GB = 2^10, 2^20, 2^30 bytes, as jeprof and pprof print them"
_BINARY_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_SIZE_HELP = "a number of bytes with an optional unit (KiB, MiB, GiB binary; KB, MB, GB decimal)"
MAX_SIZE = 2**63  # 8 EiB: beyond any memory, and the most the sampler's counters hold


def parse_size(value: object) -> int:
    """Bytes in a size such as `64 MiB`, `1.5GB`, `4096`: bare numbers are bytes,
    KiB/MiB/GiB/TiB binary (2^10...), KB/MB/GB/TB decimal (10^3...). BudgetError
    otherwise (any other value, as a budget file may hold): sizes are what budgets are
    written in."""
    size: float | None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value if value >= 0 else None
    else:
        m = _SIZE_RE.fullmatch(value) if isinstance(value, str) else None
        unit = m and _SIZE_UNITS.get(m[2].lower())
        size = (
            None
            if m is None or unit is None or ("." in m[1] and unit == 1)
            else (float(m[1]) * unit)
        )
    if size is None:
        raise BudgetError(f"bad size {value!r}: expected {_SIZE_HELP}, e.g. 64MiB")
    if size > MAX_SIZE:
        raise BudgetError(f"bad size {value!r}: more than 8 EiB (2^63 bytes)")
    return round(size)


def format_size(n: float, exact: bool = True) -> str:
    """`1,250,000 B (1.19 MiB)`; without `exact`, just the short form (`1.19 MiB`)."""
    short = _short_size(n)
    if not exact:
        return short
    whole = f"{round(n):,} B"
    return whole if abs(n) < 1024 else f"{whole} ({short})"


def _short_size(n: float) -> str:
    for unit, scale in _BINARY_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{round(n)} B"


def format_bytes(value: float, signed: bool = False) -> str:
    """Bytes with four significant digits in the binary unit that shows them (`16.00 MiB`,
    `512 B`), for top's columns, which keep their width; with a sign when `signed`
    (growth)."""
    sign = "-" if value < 0 else "+" if signed and value > 0 else ""
    size = abs(value)
    for unit, scale in _BINARY_UNITS:
        if size >= scale:
            number = size / scale
            decimals = 3 if number < 10 else 2 if number < 100 else 1 if number < 1000 else 0
            return f"{sign}{number:.{decimals}f} {unit}"
    return f"{sign}{size:.0f} B"


def format_mib(n: float) -> str:
    """Bytes in MiB whatever their size, one decimal: `12.5 MiB`, for a progress line that
    is redrawn in place and so keeps its unit."""
    return f"{n / MB:.1f} MiB"


def axis_unit(top: float) -> tuple[int, str]:
    """The scale and name of the unit of an axis of bytes that reaches `top` (>= 1): the
    largest of GB, MB, kB (2^30, 2^20, 2^10: jeprof's names, as in format_amount) and B
    that `top` reaches."""
    return next((scale, name) for scale, name in _AXIS_UNITS if top >= scale)


_AXIS_UNITS = ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB"), (1, "B"))


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


def format_amount(value: float, unit: str, largest: float | None = None) -> str:
    """A value with its unit, bytes in the unit that shows them: `512 B`, `25.2 kB`,
    `12.5 MB`, or `1234 objects`. With `largest`, in the unit that shows that: the one
    unit of a list of amounts (`0.004 MB` beside `12.5 MB`)."""
    if unit == "objects":
        return f"{int(value)} objects"
    reference = abs(value if largest is None else largest)
    for scale, name in ((MB, "MB"), (1024.0, "kB")):
        if reference >= scale / 10:
            shown = value / scale
            return f"{shown:.{1 if shown == 0 or abs(shown) >= 0.05 else 3}f} {name}"
    return f"{int(value)} B"
