"""Budgets of a device heap: the CUDA stand-ins (tests/standins/) loaded the way the real
runtime is, judged by `mem_profiler gate` in exact mode."""

from __future__ import annotations

import re

import pytest
from standins.build import FIXTURES, HERE, build_device_fixture, standin_env
from support.profiling import gate

MiB = 2**20
# device_cuda local (its header table): the cuda heap peaks at 56 MiB, after
# alloc_expandable_tmp's 2 MiB on top of 54 MiB, and keeps 54 MiB to the end; the largest
# stack still holding memory is alloc_weights' (8 x 4 MiB); cuda_host peaks at 2 MiB.
CUDA_PEAK, CUDA_LIVE_AT_EXIT, CUDA_LEAK_PER_STACK = 56 * MiB, 54 * MiB, 32 * MiB


@pytest.fixture(scope="module")
def device_cuda(standin_dir):
    return build_device_fixture("device_cuda", standin_dir), standin_env(standin_dir)


@pytest.mark.parametrize("delta, status", [(0, 0), (-1, 1)])
def test_cuda_budgets_to_the_byte(device_cuda, delta, status):
    exe, env = device_cuda
    proc = gate(
        "--max-peak",
        f"cuda:{CUDA_PEAK + delta}",
        "--max-live-at-exit",
        f"cuda:{CUDA_LIVE_AT_EXIT + delta}",
        "--max-leak-per-stack",
        f"cuda:{CUDA_LEAK_PER_STACK + delta}",
        "--max-peak",
        "cuda_host:2MiB",
        "--",
        exe,
        "local",
        env=env,
    )
    assert proc.returncode == status, proc.stderr
    verdict = "FAIL" if delta else "ok  "
    for kind, value in (
        ("max-peak", CUDA_PEAK),
        ("max-live-at-exit", CUDA_LIVE_AT_EXIT),
        ("max-leak-per-stack", CUDA_LEAK_PER_STACK),
    ):
        assert re.search(rf"^{verdict} cuda {kind} {value:,} B .*, exact$", proc.stderr, re.M), (
            proc.stderr
        )
    assert re.search(r"^ok   cuda_host max-peak 2,097,152 B", proc.stderr, re.M)
    if delta:
        leak = proc.stderr.split("FAIL cuda max-leak-per-stack", 1)[1]
        assert re.search(
            rf"^ +33,554,432 B  fw_alloc_segment {re.escape(str(HERE / 'framework.c'))}:\d+ < "
            rf"alloc_weights {re.escape(str(FIXTURES / 'device_cuda.c'))}:\d+",
            leak,
            re.M,
        ), proc.stderr
