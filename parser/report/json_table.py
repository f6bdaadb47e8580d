"""The flat/cum table and the profile's metadata as JSON, for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mem_profiler.core.profile import Foreign, HeapProfile
from mem_profiler.parser.common.sampling import drop_note
from mem_profiler.parser.model.aggregate import FlatCum
from mem_profiler.parser.symbols.note_stacks import symbolized_notes

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering


def format_json(
    table: FlatCum,
    prof: HeapProfile,
    *,
    program: str | None,
    base: str | None = None,
    nodecount: int | None = None,
    foreign: Sequence[tuple[Foreign, list[str]]] = (),
) -> str:
    """One object: where the numbers come from (program, heap file, base, pid, exe,
    command line, heap, rate, capture window in ns, the heap's peak and the figure at
    which its stacks (--peak's) were recorded, dropped samples by cause and what
    they stood for, the sampler's warnings), the sample index, unit, total and what
    shares are of (share_base), the rows in -t's order ({name, flat, cum}, at most
    nodecount), and the memory registered or opened that no figure counts (`foreign`:
    each range with its stack's names, innermost first, and how many more the sampler
    could not record)."""
    start, end = prof.window_ns
    rows = zip(table.names, table.flat.tolist(), table.cum.tolist(), strict=True)
    document = {
        "program": program,
        "heap_file": prof.path,
        "base": base,
        "pid": prof.pid,
        "exe": prof.exe,
        "cmdline": prof.cmdline,
        "heap": prof.heap,
        "rate": prof.rate,
        "window_ns": {"start": start, "end": end},
        "peak": {"bytes": prof.peak_bytes, "stacks_at_bytes": prof.peak_stacks_bytes},
        "dropped_samples": prof.dropped_samples,
        "dropped": None
        if prof.drops is None
        else {**dataclasses.asdict(prof.drops), "note": drop_note(prof)},
        "python_frames_left_out": prof.python_frames_left_out,
        "warnings": prof.warnings,
        "index": table.index,
        "unit": table.unit,
        "total": table.total,
        "share_of": table.share_of,
        "rows": [
            {"name": name, "flat": flat, "cum": cum} for name, flat, cum in list(rows)[:nodecount]
        ],
        "foreign": {
            "unrecorded": int(prof.meta.get("foreign_unrecorded", 0)),
            "ranges": [
                {
                    "kind": f.kind,
                    "address": f.address,
                    "bytes": f.bytes,
                    "time_ns": f.time_ns,
                    "stack": frames,
                }
                for f, frames in foreign
            ],
        },
    }
    return json.dumps(document, indent=1) + "\n"


def render(r: Rendering) -> bytes:
    """--json: the table and the profile's metadata, its foreign ranges with their stacks."""
    req, prof = r.request, r.named.profile
    foreign = symbolized_notes(
        prof, prof.foreign, r.program, req.allow_mismatch, req.full_names, req.sysroot
    )
    return format_json(
        r.table(),
        prof,
        program=req.binary,
        base=req.base,
        nodecount=req.nodecount,
        foreign=[(note, stack) for note, stack, _ in foreign],
    ).encode("utf-8", "surrogateescape")
