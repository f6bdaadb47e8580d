"""What a heap's report lists besides its figures: the moment a profile was taken where
it is not what its figures suggest, and each with its stack, failed device allocations
("why did my program run out of device memory") and the memory the process used but did
not allocate (host memory registered with CUDA, device memory opened through IPC), which
no figure counts."""

from __future__ import annotations

from mem_profiler.core.escape import visible
from mem_profiler.core.profile import Failure, Foreign, HeapProfile
from mem_profiler.core.units import format_amount

FRAMES_SHOWN = 6


def ending_note(profile: HeapProfile) -> str | None:
    """The one line that says a Python program's exit profile is its end, not what its
    interpreter's finalization left."""
    if profile.meta.get("ended_at") != "python_finalizing":
        return None
    return (
        "Taken as the Python interpreter began to finalize, after the program's atexit"
        " handlers: what the program kept at its end."
    )


def _shown(frames: list[str]) -> str:
    """A stack on one line, its innermost frames first."""
    return " < ".join(map(visible, frames[:FRAMES_SHOWN])) + (
        " < ..." if len(frames) > FRAMES_SHOWN else ""
    )


def format_failures(profile: HeapProfile, rows: list[tuple[Failure, list[str]]]) -> str:
    recorded = int(profile.meta.get("failed_allocs", len(rows)))
    out = [
        f"\nFailed allocations in the {profile.heap} heap: {recorded}"
        + (f" (the first {len(rows)} shown)" if recorded > len(rows) else "")
        + "\n"
    ]
    for failure, frames in rows:
        out.append(
            f"{format_amount(failure.bytes, 'bytes'):>12}  error {failure.error}"
            f"  {_shown(frames)}\n"
        )
    return "".join(out)


def format_foreign(profile: HeapProfile, rows: list[tuple[Foreign, list[str]]]) -> str:
    """The ranges registered or open when the file was written; the size of an IPC range
    the driver did not give shows as '?'."""
    unrecorded = int(profile.meta.get("foreign_unrecorded", 0))
    total = sum(f.bytes for f, _ in rows)
    out = [
        f"\nMemory registered with CUDA or opened from another process (not counted in the"
        f" {profile.heap} heap): {len(rows)} ranges, {format_amount(total, 'bytes')}"
        + (f" ({unrecorded} more not recorded: the sampler's table was full)" if unrecorded else "")
        + "\n"
    ]
    for foreign, frames in rows:
        size = format_amount(foreign.bytes, "bytes") if foreign.bytes else "?"
        out.append(f"{size:>12}  {foreign.kind:<13}  {foreign.address:#x}  {_shown(frames)}\n")
    return "".join(out)
