"""Leak reports: the stacks whose sampled allocations were not freed, largest first, as
text (LeakSanitizer-like blocks) or JSON."""

from __future__ import annotations

import dataclasses
import json

from mem_profiler.core.escape import visible
from mem_profiler.core.units import format_amount
from mem_profiler.parser.log.analysis import Leak


def format_leaks(leaks: list[Leak], scope: str, heap: str, nodecount: int | None = None) -> str:
    """A summary line, then one block per stack (at most nodecount): estimated bytes and
    objects, samples, when they were allocated, and the stack, leaf first."""
    if not leaks:
        return f"No leaks of {scope} on the {heap} heap: every sampled allocation was freed.\n"
    total = sum(leak.bytes for leak in leaks)
    samples = sum(leak.samples for leak in leaks)
    out = [
        f"Leaks of {scope} on the {heap} heap: {format_amount(total, 'bytes')} in"
        f" {len(leaks)} stack(s), estimated from {samples} sampled allocations\n"
    ]
    for rank, leak in enumerate(leaks[:nodecount], 1):
        objects = f"{leak.objects:.0f} object" + ("" if round(leak.objects) == 1 else "s")
        out.append(
            f"\n#{rank} {format_amount(leak.bytes, 'bytes', total)} in {objects}"
            f" ({leak.samples} sampled), allocated {leak.first_ms:.1f}-"
            f"{leak.last_ms:.1f} ms\n"
        )
        out += [f"    {visible(name)}\n" for name in leak.stack]
    if nodecount is not None and len(leaks) > nodecount:
        out.append(f"\n... and {len(leaks) - nodecount} more stack(s)\n")
    return "".join(out)


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
