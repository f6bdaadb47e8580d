"""jeprof's --text report: `Total:` header, then flat flat% sum% cum cum% name rows."""

from __future__ import annotations

from collections.abc import Sequence

from mem_profiler.core.escape import visible
from mem_profiler.core.units import (
    format_amount,
    format_labelled,
    format_share,
    format_value,
    unit_name,
)
from mem_profiler.parser.model.aggregate import FlatCum


def format_text(table: FlatCum, nodecount: int | None = None, notes: Sequence[str] = ()) -> str:
    """The report as jeprof PrintText lays it out, `notes` under the Total line;
    `nodecount` limits the rows.

    In a diff (--base) values can be negative: they print with their minus sign."""
    changed = changed_in_both_ways(table.total, table.share_of, table.unit)
    out = [
        f"Total: {format_value(table.total, table.unit)} {unit_name(table.unit)}\n",
        *([f"Shares (%) are of {changed}\n"] if changed else []),
        *(f"{note}\n" for note in notes),
    ]
    running = 0.0
    rows = len(table.names) if nodecount is None else max(nodecount, 0)
    for name, flat, cum in zip(
        table.names[:rows], table.flat.tolist(), table.cum.tolist(), strict=False
    ):
        running += flat
        # printf("%8s %6s %6s %8s %6s %s\n", ...) in jeprof's PrintText
        out.append(
            f"{format_value(flat, table.unit):>8} {format_share(flat, table.share_of):>6}"
            f" {format_share(running, table.share_of):>6}"
            f" {format_value(cum, table.unit):>8} {format_share(cum, table.share_of):>6}"
            f" {visible(name)}\n"
        )
    return "".join(out)


def changed_in_both_ways(total: float, share_of: float, unit: str) -> str | None:
    """In a diff where stacks grew and others shrank: what the shares are of, said
    (`1.2 MB changed, growth and shrinkage added`); else None, the shares being of the
    total."""
    if share_of <= abs(total) * (1 + 1e-9):
        return None
    return f"{format_amount(share_of, unit)} changed, growth and shrinkage added"


def format_heaps_text(
    tables: list[tuple[str, FlatCum]], nodecount: int | None = None, notes: Sequence[str] = ()
) -> str:
    """Several heaps of one capture side by side: a `flat cum` pair of columns per heap,
    rows sorted by the largest flat of any heap, then name; each note a line under the
    totals."""
    unit = tables[0][1].unit
    totals = ", ".join(f"{heap} {format_value(t.total, unit)}" for heap, t in tables)
    out = [
        f"Total {unit_name(unit)}: {totals}\n",
        *(note + "\n" for note in notes),
        *pool_figures(dict(tables)),
        "".join(f" {heap + ' flat':>15} {heap + ' cum':>15}" for heap, _ in tables) + "\n",
    ]
    values: dict[str, list[float]] = {}
    for k, (_, table) in enumerate(tables):
        for name, flat, cum in zip(
            table.names, table.flat.tolist(), table.cum.tolist(), strict=True
        ):
            values.setdefault(name, [0.0] * 2 * len(tables))[2 * k : 2 * k + 2] = [flat, cum]
    order = sorted(values, key=lambda n: (-max(abs(v) for v in values[n][::2]), n))
    for name in order[:nodecount]:
        out.append(
            "".join(f" {format_value(v, unit):>15}" for v in values[name]) + f" {visible(name)}\n"
        )
    return "".join(out)


def pool_figures(tables: dict[str, FlatCum]) -> list[str]:
    """The line that sets a framework pool's blocks (the cuda heap, while the pool's
    probes were armed) against the segments it reserved (cuda_segments), as
    torch.cuda.memory_allocated() and memory_reserved() do: what is reserved beyond the
    blocks is cached or lost to fragmentation."""
    blocks, segments = tables.get("cuda"), tables.get("cuda_segments")
    if blocks is None or segments is None or blocks.unit == "objects":
        return []
    cached = segments.total - blocks.total
    return [
        f"cuda: {format_labelled(blocks.total, blocks.unit)} allocated in blocks, "
        f"{format_labelled(segments.total, blocks.unit)} reserved in segments, "
        f"{format_labelled(cached, blocks.unit)} cached or fragmented\n"
    ]
