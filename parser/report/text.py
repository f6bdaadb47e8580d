"""jeprof's --text report: `Total:` header, then flat flat% sum% cum cum% name rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mem_profiler.core.escape import visible
from mem_profiler.core.profile import HeapProfile, at_peak
from mem_profiler.core.units import (
    format_amount,
    format_labelled,
    format_share,
    format_value,
    unit_name,
)
from mem_profiler.parser.log.analysis import MS
from mem_profiler.parser.model.aggregate import FlatCum, aggregate
from mem_profiler.parser.report.notes import format_failures, format_foreign
from mem_profiler.parser.symbols.note_stacks import symbolized_notes

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering

# The default table names the peak's holders where the peak is this much above the end.
PEAK_SHOWN_ABOVE = 1.1


def render(r: Rendering) -> bytes:
    """-t: the table under the capture's notes and the peak's line, then the failed
    allocations and the foreign ranges, each with its stack."""
    prof, req = r.named.profile, r.request
    peak = peak_line(r)
    text = format_text(r.table(), req.nodecount, r.dropped + ([peak] if peak else []))
    foreign = prof.foreign or int(prof.meta.get("foreign_unrecorded", 0))
    # the failures' and foreign ranges' stacks, symbolized in one go
    named = symbolized_notes(
        prof,
        prof.failures + (prof.foreign if foreign else []),
        r.program,
        req.allow_mismatch,
        req.full_names,
        req.sysroot,
    )
    stacks = [(stack, python_at) for _, stack, python_at in named]
    failed, ranges = stacks[: len(prof.failures)], stacks[len(prof.failures) :]
    if prof.failures:
        text += format_failures(prof, list(zip(prof.failures, failed, strict=True)))
    if foreign:
        text += format_foreign(prof, list(zip(prof.foreign, ranges, strict=True)))
    return text.encode("utf-8", "surrogateescape")


def peak_line(r: Rendering) -> str | None:
    """The default table's line on the heap's peak: its bytes and the functions that
    held most of them, where the capture records its stacks and the peak stands above
    what is live at the end."""
    sym, req = r.named, r.request
    if req.index != "inuse_space" or req.base or req.context or req.focus or req.ignore:
        return None
    at = at_peak(sym.profile)
    if req.categories is not None or at is None:
        return None
    then = aggregate(
        dataclasses.replace(sym, profile=at, values=None),
        req.index,
        lines=req.lines,
        full_names=req.full_names,
    )
    end = float(np.sum(sym.value(req.index)))
    peak = float(sym.profile.peak_bytes or then.total)  # the heap's own figure, exact
    if peak <= PEAK_SHOWN_ABOVE * end:
        return None
    said = f"Peak: {format_amount(peak, 'bytes')}{peak_moment(sym.profile)}"
    if then.total <= 0:  # an event log's window: its events, not the file, hold the peak
        return f"{said} (mem_parser --peak: its table)" if sym.profile.meta.get("log") else None
    held = ", ".join(
        f"{visible(name)} {format_amount(value, 'bytes')}"
        for name, value in zip(then.names[:3], then.flat[:3].tolist(), strict=False)
        if value > 0
    )
    return f"{said}, most in {held} (mem_parser --peak: the whole table)"


def peak_moment(profile: HeapProfile) -> str:
    """`at 12.5 ms` into the window, where the file says."""
    start, at = profile.window_ns[0], profile.meta.get("peak_time_ns", "")
    if start is None or not at.isdigit() or int(at) < start:
        return ""
    return f" at {(int(at) - start) / MS:.1f} ms"


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
