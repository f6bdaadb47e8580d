"""Leak reports: the stacks whose sampled allocations were not freed, largest first, as
text (LeakSanitizer-like blocks) or JSON."""

from __future__ import annotations

import dataclasses
import json

from mem_profiler.core.units import format_amount
from mem_profiler.parser.log.analysis import Leak
from mem_profiler.parser.report.stack_blocks import stack_blocks


def format_leaks(leaks: list[Leak], scope: str, heap: str, nodecount: int | None = None) -> str:
    """A summary line, then one block per stack (at most nodecount): estimated bytes and
    objects, samples, when they were allocated, and the stack, leaf first."""
    if not leaks:
        return f"No leaks of {scope} on the {heap} heap: every sampled allocation was freed.\n"
    total = sum(leak.bytes for leak in leaks)
    samples = sum(leak.samples for leak in leaks)
    summary = (
        f"Leaks of {scope} on the {heap} heap: {format_amount(total, 'bytes')} in"
        f" {len(leaks)} stack(s), estimated from {samples} sampled allocations\n"
    )

    def heading(leak: Leak) -> str:
        objects = f"{leak.objects:.0f} object" + ("" if round(leak.objects) == 1 else "s")
        return (
            f"{format_amount(leak.bytes, 'bytes', total)} in {objects} ({leak.samples}"
            f" sampled), allocated {leak.first_ms:.1f}-{leak.last_ms:.1f} ms"
        )

    return summary + stack_blocks(leaks, nodecount, heading)


def format_leaks_json(
    leaks: list[Leak], scope: str, heap: str, nodecount: int | None = None
) -> str:
    """{scope, heap, total_bytes, leaks: [{heap, stack, bytes, objects, samples, first_ms,
    last_ms}]}, leaks largest first (at most nodecount)."""
    document = {
        "scope": scope,
        "heap": heap,
        "total_bytes": sum(leak.bytes for leak in leaks),
        "leaks": [dataclasses.asdict(leak) for leak in leaks[:nodecount]],
    }
    return json.dumps(document, indent=1) + "\n"
