"""Real GPU: tests/sampler/test_cuda_runtimes.py's checks with NVIDIA's runtimes over the real
driver, where the allocations succeed: tests/fixtures/device_cuda_api.c in its "gpu"
mode under `mem_profiler run --device-rate 1`, for each runtime the driver accepts.

- the runtime's table of driver functions holds the sampler's wrapper for every
  memory entry point, copy, set and launch it fetched (a real driver has them all),
  and none of those of the driver itself;
- every runtime allocation is in its heap, once, from its site, with the bytes
  asked for (cudaMallocPitch and cudaMalloc3D: with the pitch the driver chose);
- every driver-API allocation with its exact bytes; the results are the same with
  and without the sampler.

Skipped without nvidia-smi on PATH."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no nvidia-smi on PATH: no GPU to check against", allow_module_level=True)

from standins import truth  # noqa: E402
from standins.build import build_fixture_for_real_driver  # noqa: E402
from support.device import (  # noqa: E402
    assert_sites,
    checksum,
    run_device,
    runtime_calls,
    table,
    wrapped,
)
from support.nvidia_runtime import RUNTIMES, runtime_library  # noqa: E402

PITCHED = {"rt_malloc_pitch", "rt_malloc_3d"}


@pytest.mark.parametrize("version", list(RUNTIMES))
def test_nvidia_runtime_on_a_gpu(tmp_path, version):
    exe = build_fixture_for_real_driver("device_cuda_api", tmp_path / "fixtures")
    lib = str(runtime_library(version))
    plain = subprocess.run([exe, lib, "gpu"], capture_output=True, text=True, timeout=300)
    started = re.search(r"^start error=(\d+)$", plain.stdout, re.M)
    if started and started[1] == "35":  # cudaErrorInsufficientDriver
        pytest.skip(f"the driver is older than CUDA {version}")
    assert plain.returncode == 0 and started and started[1] == "0", plain.stdout + plain.stderr

    proc, heaps = run_device(exe, [lib, "gpu"], tmp_path / "g_", None)
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain.stdout)

    found = table(proc.stdout)
    assert found["libmemprof.so"] == wrapped(version, gpu=True)
    assert not found.get("libcuda.so.1", set()) & wrapped(version, gpu=True)

    calls = runtime_calls(proc.stdout)
    assert {site: error for site, (_, _, error) in calls.items()} == dict.fromkeys(
        truth.RUNTIME_SITES, 0
    )
    for site, (heap, _, requested) in truth.RUNTIME_SITES.items():
        assert calls[site][0] == heap
        assert calls[site][1] >= requested if site in PITCHED else calls[site][1] == requested
    assert_sites(
        heaps,
        exe,
        truth.SITES["device_cuda_api"]
        + truth.runtime_records({site: size for site, (_, size, _) in calls.items()}),
    )
