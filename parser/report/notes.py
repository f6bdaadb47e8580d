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
# What a failed device allocation's code means, per family (the heap's name up to its
# first "_"), in words true of every API of the family that returns it: CUDA's runtime
# (cudaError_t, driver_types.h) and driver (CUresult, cuda.h) share these numbers, but
# 35, which only the runtime returns.  AscendCL's are acl_base.h's and rt_error_codes.h's.
ERROR_WORDS = {
    "cuda": {
        1: "invalid argument",
        2: "out of memory",
        3: "CUDA not initialized",
        34: "a stub library stands where the driver should be",
        35: "no NVIDIA driver, or one older than the CUDA runtime",
        36: "the call needs a newer driver",
        46: "the devices are busy or unavailable",
        100: "no CUDA device",
        101: "no such device",
        801: "not supported",
    },
    "acl": {
        100000: "invalid argument",
        100001: "AscendCL not initialized",
        107000: "invalid argument",
        107001: "no such device",
        200000: "out of memory",
        207000: "not supported",
        207001: "out of memory",
        207004: "no device",
    },
    "hal": {3: "not initialized", 6: "out of memory"},
}
# a stack as it is listed: its frames, innermost first, and where its innermost Python
# frame is among them (None: none)
Frames = tuple[list[str], "int | None"]


def ending_note(profile: HeapProfile) -> str | None:
    """The one line that says when a profile was taken where that is not a window's end:
    a Python program's exit, as its end rather than what its interpreter's finalization
    left, and what was live when a device allocation failed or a framework raised its
    out-of-memory error (`raised=`), which it does after a failure it could not retry
    or at a limit of its own."""
    if profile.meta.get("ended_at") == "python_finalizing":
        return (
            "Taken as the Python interpreter began to finalize, after the program's atexit"
            " handlers: what the program kept at its end."
        )
    failure = dict(
        field.split("=", 1)
        for field in profile.meta.get("taken_at", "").split()[1:]
        if "=" in field
    )
    if not profile.meta.get("taken_at", "").startswith("device_allocation_failure"):
        return None
    bytes_asked = int(failure["bytes"]) if failure.get("bytes", "").isdigit() else 0
    # the sampler takes this moment for its family's out-of-memory codes alone
    failed = (
        f"an allocation of {format_amount(bytes_asked, 'bytes')} in the"
        f" {failure.get('heap', '?')} heap failed, out of memory"
        f" (error {failure.get('error', '?')})"
    )
    raised = visible(failure["raised"]) if "raised" in failure else None
    if raised is None:
        return f"Taken as {failed}: what was live then."
    if bytes_asked:
        return f"Taken as the framework raised {raised}, after {failed}: what was live then."
    return (
        f"Taken as the framework raised {raised} at a limit of its own (such as"
        " torch.cuda.set_per_process_memory_fraction), no device allocation having failed:"
        " what was live then."
    )


def error_said(heap: str, code: int) -> str:
    """`error 35 (no NVIDIA driver, or one older than the CUDA runtime)`, or `error N`
    where the code's meaning is not known."""
    words = ERROR_WORDS.get(heap.split("_")[0], {}).get(code)
    return f"error {code} ({words})" if words else f"error {code}"


def pool_note(profile: HeapProfile) -> str | None:
    """The line that says a framework pool's blocks were not tracked, so that the cuda
    heap holds its segments (`# pool_note:`, the sampler's words)."""
    note = profile.meta.get("pool_note")
    return f"Note: {visible(note)}." if note else None


def capture_notes(profile: HeapProfile) -> list[str]:
    """The lines a report of the profile opens with: when it was taken, what its cuda
    heap holds."""
    return [note for note in (ending_note(profile), pool_note(profile)) if note]


def shown_frames(frames: list[str], python_at: int | None) -> list[str]:
    """The frames of a stack listed on one line: its first FRAMES_SHOWN; where its
    innermost Python frame lies beyond them, the allocating frame and the next, then the
    program's code from that frame on (a tensor's stack holds a score of the framework's
    native frames), with "..." where frames are left out."""
    if len(frames) <= FRAMES_SHOWN or python_at is None or python_at < FRAMES_SHOWN:
        return frames[:FRAMES_SHOWN] + (["..."] if len(frames) > FRAMES_SHOWN else [])
    end = python_at + FRAMES_SHOWN - 2
    return frames[:2] + ["..."] + frames[python_at:end] + (["..."] if len(frames) > end else [])


def _shown(stack: Frames) -> str:
    """A stack on one line, its innermost frames first."""
    return " < ".join(map(visible, shown_frames(*stack)))


def format_failures(profile: HeapProfile, rows: list[tuple[Failure, Frames]]) -> str:
    recorded = int(profile.meta.get("failed_allocs", len(rows)))
    out = [
        f"\nFailed allocations in the {profile.heap} heap: {recorded}"
        + (f" (the first {len(rows)} shown)" if recorded > len(rows) else "")
        + "\n"
    ]
    for failure, frames in rows:
        said = error_said(profile.heap, failure.error)
        out.append(f"{format_amount(failure.bytes, 'bytes'):>12}  {said}  {_shown(frames)}\n")
    return "".join(out)


def format_foreign(profile: HeapProfile, rows: list[tuple[Foreign, Frames]]) -> str:
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
