"""--categories of code PyTorch runs as it is imported: tests/fixtures/import_categories/
main.py over a stand-in `torch` laid out as PyTorch's files, under `mem_profiler run -c 1`.
The class bodies and the decorator of its torch/optim and torch/nn/parameter.py keep
4 MiB as `import torch` would, which are no optimizer state and no weights; the layer a
module of the program's own builds at its top level is weights, and Adam.step's two
buffers are optimizer state. Each figure is the fixture's own: 1 MiB a bytearray, with
its object and the dict entries that hold it (some hundred bytes). A rule of one's own
on the same files is taken as it is: everything torch/optim allocated, 5 MiB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.paths import FIXTURES, MEM_PARSER, MEM_PROFILER

MIB = 1 << 20
OBJECTS = 4096  # beside each category's buffers: their objects, the dicts that hold them


def test_what_pytorch_runs_as_it_is_imported_is_other(tmp_path):
    script = FIXTURES / "import_categories" / "main.py"
    argv = [sys.executable, "-B", str(script)]  # -B: no __pycache__ among the fixtures
    run = subprocess.run(
        [MEM_PROFILER, "run", "-c", "1", "-o", f"{tmp_path}/i_", "--", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    (heap,) = tmp_path.glob("i_*.heap")
    rows = categories(heap, "--categories")
    assert set(rows) == {"optimizer_state", "weights", "other"}, rows
    assert 2 * MIB <= rows["optimizer_state"] < 2 * MIB + OBJECTS, rows
    assert MIB <= rows["weights"] < MIB + OBJECTS, rows
    assert rows["other"] >= 4 * MIB, rows
    rules = tmp_path / "rules.txt"
    rules.write_text("optim /torch/optim/ .*\n")
    rows = categories(heap, "--category-rules", str(rules))
    # beside the buffers, the class bodies' namespaces and functions: some KiB
    assert 5 * MIB <= rows["optim"] < 5 * MIB + 4 * OBJECTS, rows


def categories(heap: Path, *options: str) -> dict[str, float]:
    report = subprocess.run(
        [MEM_PARSER, "-f", str(heap), *options, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    return {row["name"]: row["flat"] for row in json.loads(report.stdout)["rows"]}
