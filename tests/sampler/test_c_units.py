"""The sampler's C unit tests (tests/sampler/unit/): the hash index, the frame tree, the
live table, the per-thread counters as a dump reads them, the samples' weights, the
.eh_frame rule parser, the USDT notes reader and the dynamic-symbol lookup, each built by
`make` with its one module under AddressSanitizer and UBSan, and run alone."""

from __future__ import annotations

import re
import subprocess

import pytest
from support.paths import ROOT

UNITS = sorted(path.stem for path in (ROOT / "tests" / "sampler" / "unit").glob("test_*.c"))


@pytest.mark.parametrize("unit", UNITS)
def test_c_unit(unit):
    binary = f"build/unit/{unit}"
    subprocess.run(["make", "-s", binary], cwd=ROOT, check=True)
    proc = subprocess.run([ROOT / binary], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    source = (ROOT / "tests" / "sampler" / "unit" / f"{unit}.c").read_text()
    ran = re.findall(r"^ok (\w+)$", proc.stdout, re.MULTILINE)
    assert ran == re.findall(r"^    RUN\((\w+)\);$", source, re.MULTILINE)
