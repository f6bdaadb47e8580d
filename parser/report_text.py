"""jeprof's --text report: `Total:` header, then flat flat% sum% cum cum% name rows."""

from __future__ import annotations

from mem_profiler.parser.aggregate import FlatCum

_MB = 1048576.0


def format_text(table: FlatCum, nodecount: int | None = None) -> str:
    """The report as jeprof PrintText lays it out; `nodecount` limits the rows."""
    objects = table.unit == "objects"

    def unparse(value: float) -> str:
        return f"{int(value)}" if objects else f"{value / _MB:.1f}"

    def percent(value: float) -> str:
        if table.total == 0:
            return "nan" if value == 0 else "+inf" if value > 0 else "-inf"
        return f"{value * 100.0 / table.total:.1f}%"

    out = [f"Total: {unparse(table.total)} {'objects' if objects else 'MB'}\n"]
    running = 0.0
    rows = len(table.names) if nodecount is None else max(nodecount, 0)
    for name, flat, cum in zip(table.names[:rows], table.flat.tolist(), table.cum.tolist(),
                               strict=False):
        running += flat
        # printf("%8s %6s %6s %8s %6s %s\n", ...) in jeprof's PrintText
        out.append(f"{unparse(flat):>8} {percent(flat):>6} {percent(running):>6}"
                   f" {unparse(cum):>8} {percent(cum):>6} {name}\n")
    return "".join(out)
