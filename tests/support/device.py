"""The device fixtures (tests/fixtures/device_*.c) over the stand-in libraries
(tests/standins) and NVIDIA's runtimes: running them under the sampler, reading what
they and the stand-in driver print, and checking their heaps against
tests/standins/truth.py."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from standins import truth

from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.symbols.note_stacks import symbolized_notes
from support.heap_files import heap_text
from support.profiling import profile_run, report, run_parser, total
from support.sampling_math import assert_estimate, relative_sd

INDEXES = {
    "inuse_space": "live_bytes",
    "alloc_space": "alloc_bytes",
    "inuse_objects": "live",
    "alloc_objects": "allocs",
}
# What the stand-in driver serves besides the entry points the sampler wraps, to every
# runtime; from 12.4 on the runtime also asks for cuFuncGetParamInfo (other_functions).
OTHER_DRIVER_FUNCTIONS = {
    "cuInit",
    "cuDriverGetVersion",
    "cuGetExportTable",
    "cuGraphCreate",
    "cuGraphDestroy",
    "cuIpcGetMemHandle",
    "cuMemGetAddressRange_v2",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
}


def other_functions(version: str) -> set[str]:
    """OTHER_DRIVER_FUNCTIONS and those this runtime version asks for besides."""
    newer = version not in ("11.8", "12.1")
    return OTHER_DRIVER_FUNCTIONS | ({"cuFuncGetParamInfo"} if newer else set())


SITE_LINE = re.compile(
    r"^site (\w+) heap=\w+ allocs=(\d+) alloc_bytes=(\d+) live=(\d+) live_bytes=(\d+)$", re.M
)


def site_lines(stdout: str) -> dict[str, dict[str, int]]:
    """{site: {a value of INDEXES: its figure}} of the `site` lines a fixture printed."""
    keys = ("allocs", "alloc_bytes", "live", "live_bytes")
    return {m[0]: dict(zip(keys, map(int, m[1:]), strict=True)) for m in SITE_LINE.findall(stdout)}


def checksum(stdout: str) -> str:
    """The checksum a device fixture prints over its results."""
    m = re.search(r"^checksum=([0-9a-f]{16})$", stdout, re.M)
    assert m is not None, stdout
    return m[1]


def run_device(
    exe: Path, args: list[str], prefix: Path, env: dict[str, str] | None, *extra: str
) -> tuple[subprocess.CompletedProcess, dict[str, Path]]:
    """The program under `mem_profiler run -c 1024 --device-rate 1`: {heap: file}."""
    proc, files = profile_run([exe, *args], prefix, 1024, "--device-rate", "1", *extra, env=env)
    return proc, by_heap(files)


def by_heap(files: list[Path]) -> dict[str, Path]:
    """{heap: file} of a window's files (<prefix><pid>.<seq>[.<heap>].heap)."""
    heaps = {}
    for f in files:
        m = re.search(r"\.\d{4}(?:\.(\w+))?\.heap$", f.name)
        assert m is not None, f
        heaps[m.group(1) or "host"] = f
    return heaps


def live_at_failure(stderr: str) -> dict[str, Path]:
    """The files `run`, or a window's controller, named as written when the program ran
    out of device memory."""
    said = re.findall(r"out of device memory; what was live then: (\S+)$", stderr, re.M)
    return by_heap([Path(p) for p in said])


def failures_listed(exe: Path, heaps: dict[str, Path], heap: str, count: int) -> list[str]:
    """The lines of mem_parser's text report of one heap under its header `Failed
    allocations in the HEAP heap: COUNT`, which must be there."""
    text = run_parser("-p", exe, "-f", heaps[heap], "-t").stdout
    header = f"\nFailed allocations in the {heap} heap: {count}\n"
    assert header in text, text
    return text.split(header)[1].splitlines()


def assert_sites(heaps: dict[str, Path], exe: Path, sites: list[dict]) -> None:
    """Every site's four figures in its heap, exact at --device-rate 1; the heap's
    totals are the sum of its sites: nothing is counted twice, nothing is missed."""
    for heap, by_site in truth.by_heap("", sites).items():
        for index, key in INDEXES.items():
            rows = report(heaps[heap], exe, index)
            for site, rec in by_site.items():
                assert rows.get(site, (0, 0))[1] == rec[key], (heap, site, index)
            assert total(heaps[heap], exe, index) == sum(r[key] for r in by_site.values()), (
                heap,
                index,
            )


def assert_sites_estimated(
    sites: dict[str, dict[str, int]], rate: int, cum_of: Callable[[str], Mapping[str, float]]
) -> None:
    """Each site's four figures (site_lines) estimated at --device-rate `rate` from a heap
    whose `cum_of(index)` is {site: cum}: within 5 standard deviations of the sampling
    math and 15%, each site's blocks of one size; none live where the site kept none."""
    for index, key in INDEXES.items():
        cum = cum_of(index)
        for name, figures in sites.items():
            size = figures["alloc_bytes"] // figures["allocs"]
            blocks = figures["live" if index.startswith("inuse") else "allocs"]
            got = cum.get(name, 0.0)
            if blocks == 0:
                assert got == 0, (name, index, got)
            else:
                assert_estimate(got, figures[key], relative_sd(blocks, size, rate), 0.15)


# --- memory registered with CUDA or opened through IPC: listed, never counted ----------


def foreign_calls(stdout: str) -> dict[str, tuple[str, int, int]]:
    """{site: (the object:function called, address, error)} of device_foreign's
    registrations and opens"""
    return {
        m[0]: (m[1], int(m[2], 16), int(m[3]))
        for m in re.findall(
            r"^foreign site=(\w+) via=(\S+) address=(0x[0-9a-f]+|0) bytes=\d+ error=(-?\d+)$",
            stdout,
            re.M,
        )
    }


def assert_foreign(
    heaps: dict[str, Path], exe: Path, calls: dict[str, tuple[str, int, int]], kept: list[str]
) -> None:
    """The ranges of the sites `kept` are the foreign notes of their heaps, each once with
    its kind, the address the program got, the bytes of the range and its site in the
    stack; there is nothing else, and no failure."""
    for heap in ("cuda", "cuda_host"):
        profile = read_heap(heaps[heap])
        got: Counter[tuple[str, str, int, int]] = Counter()
        for note, stack, _ in symbolized_notes(profile, profile.foreign, str(exe)):
            sites = [name for name in stack if name in truth.FOREIGN_SITES]
            got[sites[0] if sites else "?", note.kind, note.address, note.bytes] += 1
        want = Counter(
            (site, kind, calls[site][1], size)
            for site in kept
            for h, kind, _, size, _ in [truth.FOREIGN_SITES[site]]
            if h == heap
        )
        assert got == want, heap
        assert (profile.failures, profile.meta.get("foreign_unrecorded")) == ([], None)


def called_as(runtime_object: str, driver_object: str) -> dict[str, str]:
    """{site: object:function} device_foreign calls, its runtime's functions in
    runtime_object and the driver's in driver_object."""
    return {
        site: f"{runtime_object if site.startswith('rt_') else driver_object}:{api}"
        for site, (_, _, api, _, _) in truth.FOREIGN_SITES.items()
    }


# --- NVIDIA's runtimes over the stand-in driver (tests/fixtures/device_cuda_api.c) -------


def lookups(text: str) -> list[tuple[str, str, int, int, str]]:
    """The driver's trace of cuGetProcAddress[_v2]: (getter, symbol, version, flags, answer)."""
    return [
        (m[0], m[1], int(m[2]), int(m[3]), m[4])
        for m in re.findall(r"^cuda (cuGetProcAddress\w*) (\S*) (\d+) (\d+) -> (\S+)$", text, re.M)
    ]


def table(stdout: str) -> dict[str, set[str]]:
    """{object: CUDA functions its pointers in the runtime's data point at}"""
    found: dict[str, set[str]] = {}
    for obj, name in re.findall(r"^table (\S+) (cu\w+)$", stdout, re.M):
        found.setdefault(obj, set()).add(name)
    return found


def runtime_calls(stdout: str) -> dict[str, tuple[str, int, int]]:
    """{site: (heap, bytes, error)} of the program's runtime allocation calls"""
    return {
        m[0]: (m[1], int(m[2]), int(m[3]))
        for m in re.findall(r"^rt site=(\w+) heap=(\w+) bytes=(\d+) error=(-?\d+)$", stdout, re.M)
    }


def wrapped(version: str, gpu: bool = False) -> set[str]:
    """The driver functions the sampler wraps that this runtime fetches from the
    stand-in driver, or (gpu) from a real one."""
    requests = truth.NVIDIA_RUNTIME_REQUESTS | (
        truth.NVIDIA_RUNTIME_REQUESTS_OF_A_GPU if gpu else {}
    )
    return {
        variant
        for (name, number, _), variant in requests.items()
        if version != "11.8" or (name, number) != ("cuGetProcAddress", 12000)
    }


def assert_runtime_failures(
    heaps: dict[str, Path], exe: Path, seen: dict[str, tuple[str, int, int]]
) -> None:
    """Each runtime call the program saw fail is one failure of its heap, with its
    bytes and error, and its site in the stack."""
    for heap in ("cuda", "cuda_host"):
        want = Counter(
            (site, requested, error) for site, (h, requested, error) in seen.items() if h == heap
        )
        profile = read_heap(heaps[heap])
        got: Counter[tuple[str, int, int]] = Counter()
        for failure, stack, _ in symbolized_notes(profile, profile.failures, str(exe)):
            sites = [name for name in stack if name in truth.RUNTIME_SITES]
            got[sites[0] if sites else "?", failure.bytes, failure.error] += 1
        assert got == want, heap
        assert f"# failed_allocs: {sum(want.values())}\n" in heap_text(heaps[heap])


# device_pool's line of its pool's figures (tests/fixtures/device_pool.c)
POOL = re.compile(r"^pool reserved=(\d+) allocated=(\d+) semaphores=(\d+) checksum=(\w+)$", re.M)


def pool_of(stdout: str) -> tuple[int, int, int, str]:
    """The last pool line: reserved, allocated, the semaphores as it saw them, checksum."""
    reserved, allocated, semaphores, checksum = POOL.findall(stdout)[-1]
    return int(reserved), int(allocated), int(semaphores), checksum


def assert_blocks_exact(heaps: dict[str, Path], exe: Path, stdout: str) -> None:
    """Each site's four figures in the cuda heap, the heap's totals their sums, and the
    cuda_segments heap's live bytes the pool's reserved bytes."""
    sites = site_lines(stdout)
    assert set(sites) == {"pool_weights", "pool_grads", "pool_activations", "pool_scratch"}
    for index, key in INDEXES.items():
        rows = report(heaps["cuda"], exe, index)
        for name, figures in sites.items():
            assert rows.get(name, (0, 0))[1] == figures[key], (name, index)
        assert total(heaps["cuda"], exe, index) == sum(t[key] for t in sites.values()), index
    reserved, allocated, _, _ = pool_of(stdout)
    assert allocated == sum(t["live_bytes"] for t in sites.values())
    assert total(heaps["cuda_segments"], exe, "inuse_space") == reserved
    # the segments that empty_cache gave back were taken out
    assert total(heaps["cuda_segments"], exe, "alloc_space") > reserved
