"""Shared test helpers: fixture programs built with -g, runs under the real sampler,
and tolerances derived from the sampling math (ARCHITECTURE.md, "Sampling and
unsampling")."""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
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


# --- reports (issue 4): real runs of the sites fixture, headless Chromium, PNG pixels ----

SITES_EXACT = (1000, 4000, 10)  # site_pages, site_small, site_transient blocks at -c 1


@pytest.fixture(scope="session")
def sites_exact(build_fixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sites fixture and the .heap of one run recording every allocation (-c 1)."""
    exe = build_fixture("sites")
    proc, files = profile_run([exe, *SITES_EXACT], tmp_path_factory.mktemp("exact") / "x_", 1)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    return exe, files[0]


def chromium(*args: str, profile_dir: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """Headless Chromium (Debian `chromium`, installed by `make deps`), kept off the network."""
    exe = next((p for p in ("chromium", "chromium-browser") if shutil.which(p)), None)
    if exe is None:
        pytest.fail("chromium is not installed: run the tests with `make test`")
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile_dir}", *args],
        capture_output=True, text=True, timeout=timeout, check=True)


def png_pixels(path: Path) -> np.ndarray:
    """(height, width, channels) uint8 pixels of an 8-bit non-interlaced RGB or RGBA PNG
    (what Chromium's screenshots are), decoded with zlib and the five PNG row filters."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    pos, idat = 8, b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, "unexpected PNG layout"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    channels = 3 if color == 2 else 4
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width * channels + 1)
    out = np.zeros((height + 1, width * channels), np.uint8)  # row 0: the zero row above
    for y, (kind, line) in enumerate(zip(rows[:, 0].tolist(), rows[:, 1:], strict=True), 1):
        up = out[y - 1]
        if kind == 0:
            out[y] = line
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            out[y] = np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:
            out[y] = line + up
        else:  # Average and Paeth depend on the byte to the left: byte by byte
            row, above = bytearray(line.tobytes()), up.tolist()
            for i in range(len(row)):
                left = row[i - channels] if i >= channels else 0
                corner = above[i - channels] if i >= channels else 0
                if kind == 3:
                    row[i] = (row[i] + (left + above[i]) // 2) & 0xFF
                else:
                    p = left + above[i] - corner
                    pa, pb, pc = abs(p - left), abs(p - above[i]), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else above[i] if pb <= pc else corner
                    row[i] = (row[i] + pred) & 0xFF
            out[y] = np.frombuffer(bytes(row), np.uint8)
    return out[1:].reshape(height, width, channels)


def assert_not_blank(png: Path) -> None:
    """At least 1% of the pixels differ from the commonest colour, in at least 8 colours."""
    pixels = png_pixels(png)[:, :, :3].reshape(-1, 3)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colors[counts.argmax()]
    other = np.any(pixels != background, axis=1).mean()
    assert other >= 0.01 and len(colors) >= 8, (
        f"{png} looks blank: {other:.2%} of its pixels differ from {background.tolist()},"
        f" {len(colors)} colours")
