"""Real GPU: a training loop's device memory as the framework sees it
(tests/gpu/torch_training.py), at `--device-rate 1`:

- an MLP trained with Adam on CUDA: its parameters' bytes in weights and in gradients
  (allocated on autograd's device thread, which has no Python frame), twice that in
  optimizer state, by `mem_parser --categories` of the cuda heap; the live tensors are
  exactly the active blocks of torch.cuda.memory._snapshot(), count and bytes;
- a provoked out-of-memory error, past the device's memory (under the native
  allocator, also in log mode, expandable_segments:True and backend:cudaMallocAsync) and
  past a memory fraction: the program's own exception unchanged, and the file written
  as it was raised names the function that held the live tensors, with their bytes;
- a failed cudaMalloc the allocator retries with success after giving its cache back
  writes no such file.

Skipped without nvidia-smi on PATH, and when the Python that runs the workload
(TORCH_PYTHON, else this interpreter) has no torch with CUDA."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no nvidia-smi on PATH: no GPU to check against", allow_module_level=True)

from support.paths import MEM_PARSER, MEM_PROFILER  # noqa: E402

WORKLOAD = Path(__file__).with_name("torch_training.py")
MiB = 1 << 20


def run_workload(
    torch_python: str, folder: Path, mode: str, alloc_conf: str = "", capture: str = "table"
) -> tuple[dict[str, str], str]:
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF=alloc_conf) if alloc_conf else None
    options = ["-c", "1024", "--device-rate", "1", "--mode", capture, "-o", f"{folder}/w_"]
    proc = subprocess.run(
        [MEM_PROFILER, "run", *options, "--", torch_python, str(WORKLOAD), mode],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(re.findall(r"^(\w+)=(.*)$", proc.stdout, re.M)), proc.stderr


def parse(*args: str) -> dict:
    proc = subprocess.run(
        [MEM_PARSER, *args, "--json"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_adam_on_cuda_by_category(torch_python, tmp_path):
    truth, _ = run_workload(torch_python, tmp_path, "adam")
    cuda = truth["profile"].replace(".heap", ".cuda.heap")
    params = int(truth["param_bytes"])
    rows = {r["name"]: r["flat"] for r in parse("-f", cuda, "--categories")["rows"]}
    assert rows.get("weights") == params, rows
    assert rows.get("gradients") == params, rows
    assert rows.get("optimizer_state") == 2 * params, rows
    space = parse("-f", cuda)
    objects = parse("-f", cuda, "--inuse_objects")
    assert space["total"] == int(truth["block_bytes"]) == int(truth["memory_allocated"])
    assert objects["total"] == int(truth["blocks"])


@pytest.mark.parametrize(
    "mode, alloc_conf, capture",
    [
        ("oom", "", "table"),
        ("oom", "", "log"),
        ("limit", "", "table"),
        ("oom", "expandable_segments:True", "table"),
        ("oom", "backend:cudaMallocAsync", "table"),
    ],
)
def test_an_out_of_memory_error_leaves_what_was_live(
    torch_python, tmp_path, mode, alloc_conf, capture
):
    truth, stderr = run_workload(torch_python, tmp_path, mode, alloc_conf, capture)
    assert truth["error"] == "OutOfMemoryError"  # the program's own, unchanged
    found = re.search(r"out of device memory; what was live then: (\S+\.cuda\.heap)", stderr)
    assert found, stderr
    held = int(truth["memory_allocated"])
    assert held >= 3 * 256 * MiB
    report = parse("-f", found[1])
    assert report["total"] == held
    rows = {r["name"]: r["cum"] for r in report["rows"]}
    assert rows.get(f"hold_for_step ({WORKLOAD.name})") == 3 * 256 * MiB, rows
    said = subprocess.run([MEM_PARSER, "-f", found[1], "-t"], capture_output=True, text=True)
    assert "the framework raised c10::OutOfMemoryError" in said.stdout.splitlines()[1]


def test_a_retried_allocation_leaves_no_out_of_memory_file(torch_python, tmp_path):
    truth, stderr = run_workload(torch_python, tmp_path, "retry")
    assert truth["retried"] == "1"  # the allocator's cudaMalloc failed, then succeeded
    assert "out of device memory" not in stderr
    assert not list(tmp_path.glob("w_oom_*"))
