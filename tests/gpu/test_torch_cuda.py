"""Real GPU: a PyTorch CUDA workload under `mem_profiler run --device-rate 1`; while the
caching allocator's tensors are tracked (the cuda heap: tests/gpu/test_torch_tensors.py),
what the process takes from CUDA is the `cuda_segments` heap, whose live bytes allocated
through the caching allocator must match torch.cuda.memory_reserved() within 1%, every
other live byte must be cuBLAS's own (allocated as its handle is created, which PyTorch
does not count), and the top stack must be inside the caching allocator.

Skipped without nvidia-smi on PATH, and when the Python that runs the workload
(TORCH_PYTHON, else this interpreter) has no torch with CUDA."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no nvidia-smi on PATH: no GPU to check against", allow_module_level=True)

from support.paths import MEM_PROFILER  # noqa: E402

from mem_profiler.parser.read.heap_file import read_heap  # noqa: E402
from mem_profiler.parser.symbols.symbolize import symbolize  # noqa: E402

WORKLOAD = Path(__file__).with_name("workload.py")
ALLOCATOR = re.compile(r"CUDACachingAllocator|c10::cuda")
CUBLAS_HANDLE = re.compile(r"^cublasCreate")


def test_cuda_segments_match_memory_reserved(torch_python, tmp_path):
    prefix = tmp_path / "t_"
    cmd = [
        MEM_PROFILER,
        "run",
        "-c",
        "1024",
        "--device-rate",
        "1",
        "-o",
        str(prefix),
        "--",
        torch_python,
        str(WORKLOAD),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"^memory_reserved=(\d+)$", proc.stdout, re.M)
    assert m is not None, proc.stdout
    reserved = int(m[1])
    assert reserved > 1 << 30, "the workload reserves over 1 GiB"

    heaps = sorted(tmp_path.glob("t_*.0001.cuda_segments.heap"))
    assert len(heaps) == 1, (sorted(p.name for p in tmp_path.iterdir()), proc.stderr)
    profile = read_heap(heaps[0])
    assert profile.heap == "cuda_segments"
    exe = profile.exe or os.path.realpath(torch_python)
    sym = symbolize(profile, exe, native=True)  # the allocator's and cuBLAS's frames
    inuse = sym.value("inuse_space")
    names, node_of = sym.node_names(full_names=True)  # once: every function is named
    live = {
        i: [names[n] for n in node_of[sym.frames[sym.offsets[i] : sym.offsets[i + 1]]]]
        for i in inuse.nonzero()[0].tolist()
    }
    cached = sum(float(inuse[i]) for i, s in live.items() if any(map(ALLOCATOR.search, s)))
    assert abs(cached - reserved) <= 0.01 * reserved, (
        f"cuda heap live through the caching allocator {cached:.0f} B vs memory_reserved "
        f"{reserved} B ({(cached - reserved) / reserved:+.2%})"
    )
    for stack in live.values():
        if not any(map(ALLOCATOR.search, stack)):
            assert any(map(CUBLAS_HANDLE.search, stack)), "\n  ".join(stack)

    stack = live[int(inuse.argmax())]
    assert any(ALLOCATOR.search(name) for name in stack), "top stack:\n  " + "\n  ".join(stack)
