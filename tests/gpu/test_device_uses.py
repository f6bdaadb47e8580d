"""Real GPU: tests/sampler/test_device_uses.py's fixture through real kernels (its PTX
compiled by the driver) and the real driver's cuFuncGetParamInfo: the same findings with
the same launch counts, the results the same with and without the sampler.

Skipped without nvidia-smi on PATH, or where the driver is older than CUDA 12.4."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no nvidia-smi on PATH: no GPU to check against", allow_module_level=True)

from standins.build import build_fixture_for_real_driver  # noqa: E402
from support.device import checksum, run_device  # noqa: E402
from support.nvidia_runtime import runtime_library  # noqa: E402
from support.profiling import run_parser  # noqa: E402

KiB, MiB = 1024, 1024 * 1024


def test_inefficient_blocks_through_real_kernels(tmp_path):
    exe = build_fixture_for_real_driver("device_uses", tmp_path / "fixtures")
    args = ["gpu", str(runtime_library("12.4"))]
    plain = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    proc, heaps = run_device(exe, args, tmp_path / "g_", None, "--mode", "log")
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain.stdout)
    run = run_parser(
        "-p", exe, "-f", heaps["cuda"], "--inefficient", "--json", "--idle-threshold", "30"
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    if report["unknown_launches"]:
        pytest.skip("the driver does not tell kernels' parameters (before CUDA 12.4)")
    found = sorted(
        (f["kind"], f["stack"][f["stack"].index("allocate") + 1], f["size"], f["launches"])
        for f in report["findings"]
    )
    assert found == [
        ("early_allocation", "early_late_buffer", 4 * MiB, 10),
        ("early_allocation", "early_small", 4 * KiB, 10),
        ("late_deallocation", "early_late_buffer", 4 * MiB, 10),
        ("late_deallocation", "early_small", 4 * KiB, 10),
        ("temporary_idleness", "idle_buffer", 2 * MiB, 40),
    ]
