"""What tests/fixtures/python_sites.py kept, as a profile shows it per Python function,
and the sampling math's bounds for it (tests/sampler/test_python_frames.py, and the
arm64 suite's run of it)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from mem_profiler.core.profile import PythonFrame
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile
from support.sampling_math import blocks_estimate_sd

LIMITS = {1: 0.05, 1024: 0.10}  # the bounds per function, by rate


def size_options(rate: int) -> tuple[str, ...]:
    """The fixture's options for a run at `rate`: at -c 1, whose figures are exact, a
    tenth of the blocks (--small); sampled, all of them, which 5 sd within LIMITS need."""
    return ("--small",) if rate == 1 else ()


def _totals(
    sym: SymbolizedProfile, key: Callable[[PythonFrame], Hashable | None], index: str
) -> dict:
    """Per key of a stack's Python frames (`key`, None for a frame not counted): the
    value of the stacks with a frame of that key, each stack counted once per key."""
    values = sym.value(index)
    records = sym.profile.python_frames  # a Python frame's address is its record's
    totals: dict = {}
    for i, value in enumerate(values.tolist()):
        addrs = sym.addrs[sym.frames[sym.offsets[i] : sym.offsets[i + 1]]].tolist()
        for k in {key(records[a]) for a in addrs if a in records} - {None}:
            totals[k] = totals.get(k, 0.0) + value
    return totals


def _function(frame: PythonFrame) -> str:
    return frame.name.rpartition(".")[2]  # the last part of its qualified name


def function_totals(sym: SymbolizedProfile, index: str = "inuse_space") -> dict[str, float]:
    """Per Python function (the last part of its qualified name): the value of the stacks
    through it."""
    return _totals(sym, _function, index)


def line_totals(
    sym: SymbolizedProfile, function: str, index: str = "inuse_space"
) -> dict[int, float]:
    """Per line of one Python function: the value of the stacks through that line."""
    return _totals(sym, lambda f: f.line if _function(f) == function else None, index)


def truth_sd(sizes: dict[str, int], rate: int) -> tuple[float, float]:
    """blocks_estimate_sd of a site's blocks as the fixture's JSON gives them."""
    return blocks_estimate_sd({int(size): count for size, count in sizes.items()}, rate)
