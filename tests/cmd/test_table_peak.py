"""The peak without log mode: a table-mode capture keeps what each stack held at the
heap's peak, so `mem_parser --peak`, the default table's `Peak:` line and the gate's
`--max-peak` failure name the stacks that made it. tests/fixtures/peak_spike.c churns
512 MiB through 1 MiB, keeps 8 MiB and then makes and frees a 64 MiB spike: the spike's
stack comes first, with its bytes within the sampling error of live figures (exact at
-c 1), though at the program's end only the 8 MiB are live."""

from __future__ import annotations

import json
import math
import re
import subprocess

import pytest
from support.paths import MEM_PARSER, MEM_PROFILER

MIB = 1 << 20
SPIKE_BLOCK, SPIKE_BLOCKS = 256 << 10, 256
KEPT_BLOCK, KEPT_BLOCKS = 64 << 10, 128


@pytest.fixture(scope="module")
def spike_exe(build_fixture):
    return build_fixture("peak_spike")


def capture(exe, folder, rate: int) -> str:
    proc = subprocess.run(
        [MEM_PROFILER, "run", "-c", str(rate), "-o", f"{folder}/p_", "--", str(exe)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (heap,) = folder.glob("p_*.heap")
    return str(heap)


def sd_of(block: int, blocks: int, rate: int) -> float:
    """One standard deviation of the estimated bytes of `blocks` live blocks of `block`
    bytes sampled at `rate`: each is sampled with p = 1 - exp(-block/rate) and stands
    for block/p bytes."""
    p = 1 - math.exp(-block / rate) if rate > 1 else 1.0
    return block * math.sqrt(blocks * (1 - p) / p)


def rows(heap: str, *args: str) -> tuple[dict[str, float], subprocess.CompletedProcess]:
    proc = subprocess.run(
        [MEM_PARSER, "-f", heap, *args, "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row["flat"] for row in json.loads(proc.stdout)["rows"]}, proc


@pytest.mark.parametrize("rate", [1, 1024, 1 << 20])
def test_peak_of_a_table_capture_names_the_spike(spike_exe, tmp_path, rate):
    heap = capture(spike_exe, tmp_path, rate)
    at_end, _ = rows(heap)
    at_peak, proc = rows(heap, "--peak")
    assert re.search(r"Live at the host heap's peak: [\d.]+ MB at [\d.]+ ms", proc.stderr)
    spike_sd, kept_sd = sd_of(SPIKE_BLOCK, SPIKE_BLOCKS, rate), sd_of(KEPT_BLOCK, KEPT_BLOCKS, rate)
    first = max(at_peak, key=at_peak.__getitem__)
    assert first == "spike", at_peak
    assert abs(at_peak["spike"] - 64 * MIB) <= 4 * spike_sd + 1, at_peak
    assert abs(at_peak["keep"] - 8 * MIB) <= 4 * kept_sd + 1, at_peak
    assert at_peak.get("churn", 0.0) == 0.0  # its buffer was freed before the spike
    assert "spike" not in at_end or at_end["spike"] == 0.0
    assert abs(at_end["keep"] - 8 * MIB) <= 4 * kept_sd + 1, at_end


def test_the_default_table_names_the_peak(spike_exe, tmp_path):
    heap = capture(spike_exe, tmp_path, 1)
    proc = subprocess.run(
        [MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    total, peak = proc.stdout.splitlines()[:2]
    assert re.fullmatch(r"Total: 8\.0 MB", total), proc.stdout
    found = re.fullmatch(
        r"Peak: ([\d.]+) MB at [\d.]+ ms, most in spike 64\.0 MB, keep 8\.0 MB"
        r"(?:, \S+ [\d.]+ [kM]?B)? \(mem_parser --peak: the whole table\)",
        peak,
    )
    assert found, proc.stdout
    assert 72.0 <= float(found[1]) <= 72.1


def test_the_max_peak_failure_names_the_spike(spike_exe, tmp_path):
    proc = subprocess.run(
        [MEM_PROFILER, "gate", "--max-peak", "50MiB", "--", str(spike_exe)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    at = lines.index("     stacks live at the peak:")
    spike_line, keep_line = lines[at + 1 : at + 3]
    assert re.fullmatch(r"\s+67,108,864 B  spike \S+peak_spike\.c:\d+ < main \S+:\d+", spike_line)
    assert re.fullmatch(r"\s+8,388,608 B  keep \S+peak_spike\.c:\d+ < main \S+:\d+", keep_line)


@pytest.fixture(scope="module")
def moment_exe(build_fixture):
    return build_fixture("peak_moment")


# tests/fixtures/peak_moment.c's arithmetic at its default N = 10: the peak holds the ten
# kept blocks, the array of their pointers and the last brief block; the sampler's last
# record of stacks was made at the last 100-byte block's free, with that block put back.
N, POINTERS = 10, 10 * 8
PEAK = N * 65536 + POINTERS + 24576
RECORDED = N * 65536 + POINTERS + 100


def test_the_peaks_stacks_say_the_moment_they_are_of(moment_exe, tmp_path):
    """At -c 1 the peak's figure is exact and so are its stacks, as of the sampler's last
    record: they add up to the moment printed beside them, not to the peak, and every
    report of them says which moment that is."""
    heap = capture(moment_exe, tmp_path, 1)
    proc = subprocess.run(
        [MEM_PARSER, "-f", heap, "--peak", "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["peak"] == {"bytes": PEAK, "stacks_at_bytes": RECORDED}
    assert doc["total"] == RECORDED
    share = f"{100 * RECORDED / PEAK:.1f}% of the peak"
    assert f"at {RECORDED:,} B" in proc.stderr and share in proc.stderr, proc.stderr
    gate = subprocess.run(
        [MEM_PROFILER, "gate", "--max-peak", "1KiB", "--", str(moment_exe)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert gate.returncode == 1, gate.stderr
    said = gate.stdout + gate.stderr
    assert f"max-peak {PEAK:,} B" in said and share in said, said


def test_the_peaks_stacks_at_a_rate_add_up_to_their_moment(moment_exe, tmp_path):
    """At a sampling rate the recorded figure is the heap's estimate when the stacks were
    recorded; the stacks' estimates add up to it but for what a thread holds back of
    its changes to the figure (live_bytes.c: 16 samples' worth at most)."""
    rate = 1024
    heap = capture(moment_exe, tmp_path, rate)
    doc = json.loads(
        subprocess.run(
            [MEM_PARSER, "-f", heap, "--peak", "--json"],
            capture_output=True, text=True, timeout=300, check=True,
        ).stdout
    )  # fmt: skip
    at = doc["peak"]["stacks_at_bytes"]
    assert at is not None and at <= doc["peak"]["bytes"]
    assert abs(doc["total"] - at) <= 16 * rate, doc
