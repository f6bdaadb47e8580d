"""tests/fixtures/python_steps.py and its truth: tracemalloc's count of each site's
blocks, in a run of its own (tracemalloc's traces are allocations too, which a profiled
run would count; a truth taken apart cannot come from the sampler)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.paths import FIXTURES
from support.sampling_math import blocks_estimate_sd

STEPS_SCRIPT = FIXTURES / "python_steps.py"


@dataclass
class StepsTruth:
    sizes: dict[str, dict[int, int]]  # per site: {block size: blocks} of one call
    lines: dict[str, int]  # per site: the line that allocates
    steps: int  # each calls every site once

    def estimate_sd(self, site: str, rate: int, calls: int = 1) -> tuple[int, float]:
        """The bytes of `calls` calls of a site and the relative standard deviation of
        their estimate at `rate`."""
        return blocks_estimate_sd({size: n * calls for size, n in self.sizes[site].items()}, rate)

    def frame(self, site: str, lines: bool = False) -> str:
        """The site's function as the reports name it, or with lines its allocating
        line."""
        line = f":{self.lines[site]}" if lines else ""
        return f"{site} ({STEPS_SCRIPT.name}{line})"


def steps_truth(python: str | Path, folder: Path) -> StepsTruth:
    out = folder / "truth.json"
    subprocess.run([str(python), str(STEPS_SCRIPT), "--truth", str(out)], check=True, timeout=120)
    found = json.loads(out.read_text())
    sizes = {
        site: {int(size): n for size, n in blocks.items()}
        for site, blocks in found["sizes"].items()
    }
    return StepsTruth(sizes, found["lines"], found["steps"])
