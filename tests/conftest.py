"""Shared test helpers: fixture programs built with -g, runs under the real sampler,
and tolerances derived from the sampling math (DESIGN.md §3)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
VENV_BIN = Path(sys.executable).parent
LIBMEMPROF = ROOT / "build" / "libmemprof.so"
FIXTURE_CFLAGS = ["-g", "-O1", "-fno-omit-frame-pointer", "-fno-inline", "-pthread"]


def relative_sd(n_blocks: int, size: int, rate: int) -> float:
    """Relative standard deviation of the unsampled estimate of n_blocks allocations
    of `size` bytes: each is sampled with p = 1 - exp(-size/rate), independently
    (a Poisson process over bytes), so K ~ Binomial(n, p) and est = K*size/p."""
    if rate <= 1 or n_blocks == 0:
        return 0.0
    p = -math.expm1(-size / rate)
    return math.sqrt((1 - p) / (n_blocks * p))


def assert_estimate(estimate: float, truth: float, rel_sd: float, limit: float) -> None:
    """The estimate is within `limit` (the issue's bound) and within 5 standard
    deviations of the sampling math, which must itself fit inside the limit."""
    assert 5 * rel_sd <= limit, f"the fixture is too small for ±{limit:.0%}: sd {rel_sd:.2%}"
    error = (estimate - truth) / truth
    assert abs(error) <= limit, f"estimate {estimate:.0f} vs truth {truth:.0f} ({error:+.2%})"
    if rel_sd:
        assert abs(error) <= 5 * rel_sd, f"error {error:+.2%} exceeds 5 sd ({rel_sd:.2%} each)"


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not LIBMEMPROF.is_file():
        pytest.fail("build/libmemprof.so is missing: run the tests with `make test`")
    return tmp_path_factory.mktemp("fixtures")


@pytest.fixture(scope="session")
def build_fixture(fixture_dir: Path):
    """Compile tests/fixtures/<name>.c[pp] once per session; returns the binary's path."""
    built: dict[tuple[str, tuple[str, ...]], Path] = {}

    def build(name: str, *extra: str, shared: bool = False, output: str | None = None) -> Path:
        key = (name, extra + (("shared",) if shared else ()))
        if key in built:
            return built[key]
        source = next(FIXTURES.glob(f"{name}.c*"))
        compiler = "g++" if source.suffix == ".cpp" else "gcc"
        out = fixture_dir / (output or (f"lib{name}.so" if shared else name))
        flags = FIXTURE_CFLAGS + (["-shared", "-fPIC"] if shared else []) + list(extra)
        subprocess.run([compiler, *flags, "-o", str(out), str(source), "-ldl"], check=True)
        built[key] = out
        return out

    return build


def profile_run(argv: list[str | Path], prefix: Path, rate: int = 1024, *extra: str,
                timeout: float = 120) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """Run argv under `mem_profiler run`; returns the process and the .heap files written."""
    cmd = [str(VENV_BIN / "mem_profiler"), "run", "-c", str(rate), "-o", str(prefix), *extra,
           "--", *map(str, argv)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    written = [Path(line.split("wrote ", 1)[1]) for line in proc.stderr.splitlines()
               if line.startswith("mem_profiler: wrote ")]
    return proc, written


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MEMPROF_* or LD_PRELOAD leaking in from the caller's environment."""
    for key in list(os.environ):
        if key.startswith("MEMPROF_") or key == "LD_PRELOAD":
            monkeypatch.delenv(key)


def flat_cum(heap: Path, binary: Path, index: str = "inuse_space"):
    """The aggregated table of a .heap file through the real parser pipeline."""
    from mem_profiler.parser.aggregate import aggregate
    from mem_profiler.parser.heapfile import read_heap
    from mem_profiler.parser.symbolize import symbolize

    return aggregate(symbolize(read_heap(heap), binary), index)


def report(heap: Path, binary: Path, index: str = "inuse_space") -> dict[str, tuple[float, float]]:
    """{function: (flat, cum)}"""
    table = flat_cum(heap, binary, index)
    rows = zip(table.names, table.flat, table.cum, strict=True)
    return {name: (float(f), float(c)) for name, f, c in rows}


def total(heap: Path, binary: Path, index: str = "inuse_space") -> float:
    return float(flat_cum(heap, binary, index).total)
