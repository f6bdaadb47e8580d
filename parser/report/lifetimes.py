"""The lifetimes report (mem_parser --lifetimes): each stack's allocations by how long they
lived, most bytes allocated first, as text (a block per stack) or JSON."""

from __future__ import annotations

import dataclasses
import json

from mem_profiler.core.profile import LIFETIME_BINS
from mem_profiler.core.units import format_amount, format_share
from mem_profiler.parser.model.lifetimes import Lifetimes
from mem_profiler.parser.report.stack_blocks import stack_blocks


def format_lifetimes(rows: list[Lifetimes], heap: str, nodecount: int | None = None) -> str:
    """A summary line, then per stack (at most nodecount): its bytes allocated, the
    share of them that lived each span (the spans it has), the temporary ones where
    known, and the stack, leaf first."""
    total = sum(row.bytes for row in rows)
    samples = sum(row.samples for row in rows)
    summary = (
        f"Lifetimes of the {heap} heap's allocations: {format_amount(total, 'bytes')} in"
        f" {len(rows)} stack(s), estimated from {samples} sampled allocations; each stack's"
        " bytes by how long they lived\n"
    )

    def heading(row: Lifetimes) -> str:
        spans = "  ".join(
            f"{name} {format_share(value, row.bytes)}"
            for name, value in zip(LIFETIME_BINS, row.bins, strict=True)
            if value > 0
        )
        temporary = (
            ""
            if row.temporary is None
            else f", {format_amount(row.temporary, 'bytes', row.bytes)} temporary"
        )
        return (
            f"{format_amount(row.bytes, 'bytes', total)} allocated ({row.samples} sampled)"
            f"{temporary}\n    {spans}"
        )

    return summary + stack_blocks(rows, nodecount, heading)


def format_lifetimes_json(rows: list[Lifetimes], heap: str, nodecount: int | None = None) -> str:
    """{heap, bins, total_bytes, stacks: [{stack, bytes, samples, bins: {name: bytes},
    temporary}]}, most bytes first (at most nodecount); temporary is null where it is
    not known (an event log that samples)."""
    document = {
        "heap": heap,
        "bins": list(LIFETIME_BINS),
        "total_bytes": sum(row.bytes for row in rows),
        "stacks": [
            {**dataclasses.asdict(row), "bins": dict(zip(LIFETIME_BINS, row.bins, strict=True))}
            for row in rows[:nodecount]
        ],
    }
    return json.dumps(document, indent=1) + "\n"
