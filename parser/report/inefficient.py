"""Inefficient device memory reports (parser/log/device_uses.py): the findings of each kind,
largest block first, with the allocation's stack, as text or JSON."""

from __future__ import annotations

import dataclasses
import json

from mem_profiler.core.escape import visible
from mem_profiler.core.units import format_amount
from mem_profiler.parser.log.device_uses import Finding, Inefficiency

MS = 1e6
_WHAT = {
    "early_allocation": "allocated launches before its first use, while other blocks were freed",
    "late_deallocation": "freed launches after its last use, while other blocks were allocated",
    "temporary_idleness": "more than {threshold} launches between two of its uses",
}
_STRETCH = {
    "early_allocation": "{n} launches from its allocation to its first use",
    "late_deallocation": "{n} launches from its last use to its free",
    "temporary_idleness": "idle for {n} launches between two uses",
}


def caveats(result: Inefficiency) -> list[str]:
    """What limits the findings: operations not seen, or not read whole."""
    out = []
    if result.launches + result.copies_and_sets == 0:
        out.append(
            "the log holds no kernel launch, copy or set: without them no block can be"
            " found inefficient (a capture of a program that used no device?)."
        )
    if result.unknown:
        out.append(
            f"{result.unknown} of {result.launches} launches passed parameters that could not"
            " be read (their sizes come from cuFuncGetParamInfo, CUDA 12.4 drivers and"
            " later): blocks only they used look unused, early or late."
        )
    if result.truncated:
        out.append(
            f"{result.truncated} operations passed more values than a record holds (64):"
            " uses of the rest are not seen."
        )
    return out


def format_inefficient(result: Inefficiency, nodecount: int | None = None) -> str:
    """A summary, the caveats, then each kind's findings (at most nodecount each)."""
    out = [
        f"Inefficient device memory: {len(result.findings)} finding(s) in {result.blocks}"
        f" device block(s) of at least {format_amount(result.mem_size, 'bytes')}"
        f" ({result.unused} never used); {result.launches} launches,"
        f" {result.copies_and_sets} copies and sets seen\n"
    ]
    out += [f"note: {line}\n" for line in caveats(result)]
    for kind in result.kinds:
        found = [f for f in result.findings if f.kind == kind]
        what = _WHAT[kind].format(threshold=result.idle_threshold)
        total = sum(f.size for f in found)
        out.append(f"\n{kind} ({what}): {len(found)} block(s), {format_amount(total, 'bytes')}\n")
        for rank, f in enumerate(found[:nodecount], 1):
            out.append(f"#{rank} {_describe(f)}\n")
            out += [f"    {visible(name)}\n" for name in result.names.get(f.stack, [])]
        if nodecount is not None and len(found) > nodecount:
            out.append(f"... and {len(found) - nodecount} more\n")
    return "".join(out)


def _describe(f: Finding) -> str:
    freed = "live at the end" if f.free_ns is None else f"freed at {f.free_ns / MS:.1f} ms"
    stretch = _STRETCH[f.kind].format(n=f.launches)
    return (
        f"{format_amount(f.size, 'bytes')} of {f.heap} at 0x{f.address:x}:"
        f" {stretch} ({f.from_ns / MS:.1f}-{f.to_ns / MS:.1f} ms); allocated at"
        f" {f.alloc_ns / MS:.1f} ms, {freed}"
    )


def format_inefficient_json(result: Inefficiency, nodecount: int | None = None) -> str:
    """{kinds, mem_size, idle_threshold, blocks, unused, launches, copies_and_sets,
    unknown_launches, truncated, notes, findings: [{kind, heap, stack, address, size,
    alloc_ms, free_ms, launches, from_ms, to_ms}]}, at most nodecount findings per kind."""
    findings = []
    for kind in result.kinds:
        for f in [f for f in result.findings if f.kind == kind][:nodecount]:
            row = dataclasses.asdict(f)
            row["stack"] = result.names.get(f.stack, [])
            for name in ("alloc_ns", "free_ns", "from_ns", "to_ns"):
                value = row.pop(name)
                row[name.replace("_ns", "_ms")] = None if value is None else value / MS
            findings.append(row)
    document = {
        "kinds": list(result.kinds),
        "mem_size": result.mem_size,
        "idle_threshold": result.idle_threshold,
        "blocks": result.blocks,
        "unused": result.unused,
        "launches": result.launches,
        "copies_and_sets": result.copies_and_sets,
        "unknown_launches": result.unknown,
        "truncated": result.truncated,
        "notes": caveats(result),
        "findings": findings,
    }
    return json.dumps(document, indent=1) + "\n"
