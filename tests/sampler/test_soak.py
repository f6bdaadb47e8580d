"""A short soak (tests/support/soak.py; `make soak` runs it for minutes): bench/churn.c's
threads allocating flat out at -c 1024 while a dump is taken every second from
outside, until DUMPS are written (each takes longer on a loaded machine). Every dump
succeeds, the program ends as without the sampler, its resident set, descriptors and
threads stay flat, and its exit profile's bytes allocated match the program's own count
within the sampling math."""

from __future__ import annotations

import pytest
from support.sampling_math import relative_sd
from support.soak import build_churn, soak

# the workload ends after DUMPS dumps, or at the latest after SECONDS (a hang)
DUMPS, SECONDS, THREADS, MEAN_SIZE = 6, 300, 4, (16 + 4096) / 2


@pytest.mark.alone  # its threads take every core
def test_a_short_soak(tmp_path):
    result = soak(build_churn(tmp_path), tmp_path, SECONDS, THREADS, 1.0, 1024, DUMPS)
    assert result.exit_code == 0 and result.failed_dumps == []
    assert result.dumps == DUMPS
    settled = result.samples[1:]  # the first dump grows the tables it writes from
    assert len(settled) == DUMPS - 1
    assert {s.threads for s in settled} == {THREADS + 2}  # main, workers, control thread
    assert len({s.fds for s in settled}) == 1
    assert max(s.rss_kib for s in settled) - settled[0].rss_kib <= 4096
    sd = relative_sd(round(result.allocated / MEAN_SIZE), round(MEAN_SIZE), 1024)
    assert abs(result.estimated / result.allocated - 1) <= 5 * sd + 0.001, result
