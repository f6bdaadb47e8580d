"""What the real-GPU tests share: the Python with torch that runs their workloads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PYTHON = os.environ.get("TORCH_PYTHON", sys.executable)


@pytest.fixture(scope="module")
def torch_python() -> str:
    probe = subprocess.run(
        [PYTHON, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode != 0:
        pytest.skip(f"{PYTHON} cannot import torch (set TORCH_PYTHON): {probe.stderr[-300:]}")
    if probe.stdout.strip() != "True":
        pytest.skip(f"torch in {PYTHON} sees no CUDA device")
    return PYTHON
