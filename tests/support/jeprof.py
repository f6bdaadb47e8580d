"""Profiles compared whole: what jemalloc's heap_v2 text (mem_parser --jeprof) must give
back."""

from __future__ import annotations

import dataclasses

import numpy as np

from mem_profiler.core.profile import HeapProfile

_ARRAYS = ("addrs", "offsets", "cur_objs", "cur_bytes", "acc_objs", "acc_bytes")


def assert_same_profile(got: HeapProfile, expected: HeapProfile) -> None:
    """Every field of the two profiles the same, but the path they were read from."""
    for name in _ARRAYS:
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    if expected.estimates is None:
        assert got.estimates is None
    else:
        assert got.estimates is not None and np.array_equal(got.estimates, expected.estimates)
    others = [
        f.name
        for f in dataclasses.fields(HeapProfile)
        if f.name not in (*_ARRAYS, "estimates", "path")
    ]
    for name in others:
        assert getattr(got, name) == getattr(expected, name), name
