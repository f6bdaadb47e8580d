"""The tests' truth for allocations, which the sampler has no part in: what the
counting preload (tests/fixtures/counting_preload.c) counted in a process, the
environments that load it, and the totals a profile holds, to hold against it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mem_profiler.parser.read.heap_file import read_heap
from support.profiling import total
from support.sampling_math import assert_estimate, relative_sd

HEADER_WORDS, HISTOGRAM_SIZES, MODE_WINDOW = 8, 65536, 1
EXACT = 0.001  # -c 1: the totals within 0.1% of the truth
SAMPLED_RATE = 1024  # -c 1024: bytes within 3%, objects within 5% (and 5 sd)


@dataclass(frozen=True)
class Truth:
    """What the counting preload saw in one process: allocations, bytes asked for, and
    how many allocations of each size (the last bucket: HISTOGRAM_SIZES bytes or more)."""

    objects: int
    bytes: int
    sizes: np.ndarray
    in_window: bool = True  # counted only while the sampler's window was open

    @classmethod
    def read(cls, path: Path) -> Truth:
        words = np.fromfile(path, dtype="<u8")
        return cls(
            int(words[0]),
            int(words[1]),
            words[HEADER_WORDS:].astype(np.int64),
            int(words[2]) == MODE_WINDOW,
        )

    def __sub__(self, before: Truth) -> Truth:
        return Truth(
            self.objects - before.objects,
            self.bytes - before.bytes,
            self.sizes - before.sizes,
            self.in_window,
        )

    def relative_sds(self, rate: int) -> tuple[float, float]:
        """Relative standard deviations of the sampler's object and byte estimates:
        each size's allocations are sampled independently (support.sampling_math's
        relative_sd); sizes from HISTOGRAM_SIZES up are sampled with certainty at the rates
        used here. Blocks of 0 bytes are never sampled: they stay in the truth's objects, as
        a bias."""
        sizes = np.flatnonzero(self.sizes[1:HISTOGRAM_SIZES]) + 1
        var_objects = var_bytes = 0.0
        for size in sizes.tolist():
            n = int(self.sizes[size])
            sd_of_n = relative_sd(n, size, rate) * n
            var_objects += sd_of_n**2
            var_bytes += (sd_of_n * size) ** 2
        return var_objects**0.5 / self.objects, var_bytes**0.5 / self.bytes


def plain_environment(**extra: str) -> dict[str, str]:
    """Ours without a preload or sampler settings from the caller (MEMPROF_LIB, which
    library `mem_profiler` loads, stays), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k == "MEMPROF_LIB"
        or not (k.startswith(("MEMPROF_", "COUNTING_PRELOAD_")) or k == "LD_PRELOAD")
    }
    return env | extra


def counted_environment(preload: Path, truth_prefix: Path, **extra: str) -> dict[str, str]:
    """The counting preload in LD_PRELOAD. `mem_profiler run` puts libmemprof.so before
    it, so that the sampler's hooks call into the preload (see counting_preload.c)."""
    return plain_environment(
        LD_PRELOAD=str(preload), COUNTING_PRELOAD_PREFIX=str(truth_prefix), **extra
    )


def pid_files(folder: Path, pattern: str) -> dict[int, Path]:
    """{pid: path} of the files in folder whose name matches pattern's (\\d+) group."""
    return {
        int(m[1]): folder / m[0]
        for name in os.listdir(folder)
        if (m := re.fullmatch(pattern, name))
    }


def totals(heap: Path) -> tuple[float, float]:
    """(objects, bytes) allocated in the window, through the parser, against the
    binary that ran."""
    recorded = read_heap(heap).exe
    assert recorded is not None, heap
    exe = Path(recorded)
    return total(heap, exe, "alloc_objects"), total(heap, exe, "alloc_space")


def assert_exact(heap: Path, truth: Truth) -> None:
    """-c 1: the profile's totals are the truth's, within EXACT."""
    objects, space = totals(heap)
    assert objects == pytest.approx(truth.objects, rel=EXACT), (objects, truth.objects)
    assert space == pytest.approx(truth.bytes, rel=EXACT), (space, truth.bytes)


def assert_sampled(heap: Path, truth: Truth) -> None:
    """-c SAMPLED_RATE: bytes within 3%, objects within 5%, both within 5 standard
    deviations of the sampling math."""
    objects, space = totals(heap)
    sd_objects, sd_bytes = truth.relative_sds(SAMPLED_RATE)
    assert_estimate(space, truth.bytes, sd_bytes, 0.03)
    assert_estimate(objects, truth.objects, sd_objects, 0.05)
