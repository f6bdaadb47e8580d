"""--categories by native frames: PyTorch runs the backward pass of a device's tensors
on autograd's thread for that device, with no Python frame on it, so its gradients
are told by the engine's loop, torch::autograd::Engine::thread_main (TORCH_RULES).
tests/fixtures/autograd_thread.cpp keeps 4 MiB on such a thread and 1 MiB on its main
thread: at -c 1, exactly 4 MiB are gradients and the rest other."""

from __future__ import annotations

import json
import subprocess

from support.paths import MEM_PARSER, MEM_PROFILER

MIB = 1 << 20


def test_gradients_of_autograds_device_thread(build_fixture, tmp_path):
    exe = build_fixture("autograd_thread")
    run = subprocess.run(
        [MEM_PROFILER, "run", "-c", "1", "-o", f"{tmp_path}/g_", "--", str(exe)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    (heap,) = tmp_path.glob("g_*.heap")
    report = subprocess.run(
        [MEM_PARSER, "-f", str(heap), "--categories", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    rows = {row["name"]: row["flat"] for row in json.loads(report.stdout)["rows"]}
    assert rows["gradients"] == 4 * MIB, rows
    assert set(rows) == {"gradients", "other"}, rows
    assert MIB <= rows["other"] < MIB + 256 * 1024, rows  # the inputs, and the C++ runtime's
