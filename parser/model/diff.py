"""NEW - OLD of two symbolized profiles, as pprof's -base: growth and shrinkage."""

from __future__ import annotations

import re

import numpy as np

from mem_profiler.parser.symbols.names import FunctionTable
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


def subtract(new: SymbolizedProfile, old: SymbolizedProfile) -> SymbolizedProfile:
    """The profile of NEW - OLD over every sample index.

    Stacks are matched by what they name, not by address (each run has its own address
    layout): a location is a function, with its file:line when symbolized with lines,
    and stacks of the same locations in both profiles become one stack holding the
    difference of their values. Locations keep NEW's address; those only in OLD get
    address 0 (they are nowhere in NEW's address space). Metadata are NEW's."""
    functions = FunctionTable()
    locations: dict[tuple[int, tuple[str, int] | None, bool], int] = {}
    addrs: list[int] = []

    def location_ids(sym: SymbolizedProfile, keep_addrs: bool) -> np.ndarray:
        assert sym.inlined is not None  # SymbolizedProfile.__post_init__ fills it in
        fids = functions.ids(sym.functions, sym.system_names, sym.python_files)
        ids = []
        for f, where, addr, inlined in zip(
            sym.func_of.tolist(), sym.where, sym.addrs.tolist(), sym.inlined.tolist(), strict=True
        ):
            key = (fids[f], where, inlined)
            if key not in locations:
                locations[key] = len(locations)
                addrs.append(addr if keep_addrs else 0)
            ids.append(locations[key])
        return np.array(ids, np.int64)

    stacks: dict[tuple[int, ...], int] = {}
    rows, parts = [], []
    for sym, keep_addrs, sign in ((new, True, 1.0), (old, False, -1.0)):
        frames, bounds = location_ids(sym, keep_addrs)[sym.frames].tolist(), sym.offsets.tolist()
        rows.append(
            np.array(
                [
                    stacks.setdefault(tuple(frames[a:b]), len(stacks))
                    for a, b in zip(bounds, bounds[1:], strict=False)
                ],
                np.int64,
            )
        )
        assert sym.values is not None  # SymbolizedProfile.__post_init__ fills it in
        parts.append(sign * sym.values)
    row = np.concatenate(rows)
    values = np.column_stack(
        [
            np.bincount(row, weights=column, minlength=len(stacks))
            for column in np.concatenate(parts).T
        ]
    )
    lengths = np.array([len(s) for s in stacks], np.int64)
    offsets = np.zeros(len(stacks) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    keys = list(locations)
    return SymbolizedProfile(
        new.profile,
        np.array(addrs, np.uint64),
        functions.names,
        np.array([f for f, _, _ in keys], np.int64),
        [where for _, where, _ in keys],
        np.fromiter((loc for s in stacks for loc in s), np.int64, int(offsets[-1])),
        offsets,
        _warnings(new.warnings, old.warnings),
        values,
        functions.system_names,
        np.array([inlined for _, _, inlined in keys], bool),
        functions.python_files,
    )


def _warnings(new: list[str], old: list[str]) -> list[str]:
    """NEW's warnings, then those of OLD's that say something else: a warning that differs
    from one of NEW's by its numbers alone (how many of an object's addresses stay
    unnamed) says the same of the same object."""
    said = {re.sub(r"\d+", "N", w) for w in new}
    return list(dict.fromkeys(new + [w for w in old if re.sub(r"\d+", "N", w) not in said]))
