"""The stand-in device libraries and the device fixtures, WITHOUT the sampler:
they build, give the known results, and load the way the real libraries do
(ARCHITECTURE.md, "Device and HAL allocators"), so that the sampler's device tests rest
on something true.

- the fixtures' own accounting equals tests/standins/truth.py in every mode, and
  the checksum is the same in every mode;
- the stand-in driver served exactly the allocations the truth implies;
- the runtime dlopen()s the driver and looks up only cuGetProcAddress_v2 in it;
  no cuMem* symbol is ever bound by the loader (LD_DEBUG=bindings,files);
- a naive preload (tests/standins/probe.c) shows the traps: cudaMalloc is seen
  but needs RTLD_NOLOAD when the framework is RTLD_LOCAL, cuMemAlloc_v2 is never
  reached, halMemAllocInner is never reached through halMemAlloc;
- out-of-memory, the missing runtime, the churn benchmark and the markers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from support.device import checksum, lookups

from standins import truth
from standins.build import (
    FIXTURE_TARGETS,
    LIBRARIES,
    build_device_fixture,
    build_standins,
    standin_env,
)

MiB = truth.MiB


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("standins")
    for name in FIXTURE_TARGETS:
        build_device_fixture(name, directory)
    return directory


def base_env() -> dict[str, str]:
    """The caller's environment without anything that would change a run."""
    return {
        k: v for k, v in os.environ.items() if not (k.startswith(("MEMPROF_", "STANDIN_", "LD_")))
    }


def run(
    out: Path,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    **extra: str,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(out / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=standin_env(out, base_env(), **extra) if env is None else env,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def site_lines(stdout: str) -> dict[str, dict]:
    sites = {}
    for m in re.finditer(
        r"^site (\S+) heap=(\S+) allocs=(\d+) alloc_bytes=(\d+) live=(\d+) "
        r"live_bytes=(\d+)$",
        stdout,
        re.M,
    ):
        name, heap, *numbers = m.groups()
        sites[name] = {
            "heap": heap,
            **dict(
                zip(("allocs", "alloc_bytes", "live", "live_bytes"), map(int, numbers), strict=True)
            ),
        }
    return sites


def driver_report(stderr: str) -> dict[str, int]:
    m = re.search(r"^standin libcuda: (.*)$", stderr, re.M)
    assert m is not None, stderr
    line = m[1]
    return {k: int(v) for k, v in (item.split("=") for item in line.split())}


def trace(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def expected_lines(fixture: str, sites: list[dict] | None = None) -> dict[str, dict]:
    """What the fixture prints per site: its truth record."""
    return {
        rec["site"]: {k: rec[k] for k in ("heap", "allocs", "alloc_bytes", "live", "live_bytes")}
        for rec in (truth.SITES[fixture] if sites is None else sites)
    }


CUDA_RUNS = [("device_cuda", "local"), ("device_cuda", "global"), ("device_cuda_direct", "direct")]
ACL_RUNS = [("device_acl", "local"), ("device_acl", "global"), ("device_acl_linked", "linked")]


def traced_runs(
    out: Path, tmp_path_factory: pytest.TempPathFactory, runs: list[tuple[str, str]], **extra: str
) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Each (program, mode) of runs run once, the stand-ins tracing into a file of its
    own: {mode: (the run, its trace file)}."""
    found = {}
    for exe, mode in runs:
        trace_file = tmp_path_factory.mktemp("trace") / f"{exe}-{mode}.trace"
        # env and check named: what `extra` holds is the environment's alone
        proc = run(out, [exe, mode], env=None, check=True, STANDIN_TRACE=str(trace_file), **extra)
        found[mode] = (proc, trace_file)
    return found


# --- the libraries -----------------------------------------------------------------


def dynamic(path: Path) -> tuple[set[str], dict[str, list]]:
    """(defined exported functions, {dynamic tag: [values]})"""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection)
        funcs = {
            s.name
            for s in dynsym.iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] != "SHN_UNDEF"
        }
        tags: dict[str, list] = {}
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    value = getattr(tag, tag.entry.d_tag[3:].lower(), tag.entry.d_val)
                    tags.setdefault(tag.entry.d_tag, []).append(value)
    return funcs, tags


EXPORTS = {
    "libcuda.so.1": {
        "cuInit",
        "cuDriverGetVersion",
        "cuGetExportTable",
        "cuGetProcAddress_v2",
        "cuGetProcAddress",
        "cuMemAlloc_v2",
        "cuMemAllocPitch_v2",
        "cuMemFree_v2",
        "cuMemAllocAsync",
        "cuMemAllocAsync_ptsz",
        "cuMemFreeAsync",
        "cuMemFreeAsync_ptsz",
        "cuMemAllocFromPoolAsync",
        "cuMemAllocFromPoolAsync_ptsz",
        "cuMemPoolCreate",
        "cuMemPoolDestroy",
        "cuMemAllocManaged",
        "cuMemAllocHost_v2",
        "cuMemHostAlloc",
        "cuMemFreeHost",
        "cuArrayCreate_v2",
        "cuArray3DCreate_v2",
        "cuArrayDestroy",
        "cuMipmappedArrayCreate",
        "cuMipmappedArrayDestroy",
        "cuGraphCreate",
        "cuGraphDestroy",
        "cuGraphAddMemAllocNode",
        "cuGraphAddMemFreeNode",
        "cuMemCreate",
        "cuMemRelease",
        "cuMemAddressReserve",
        "cuMemAddressFree",
        "cuMemMap",
        "cuMemUnmap",
        "cuMemHostRegister_v2",
        "cuMemHostRegister",
        "cuMemHostUnregister",
        "cuIpcGetMemHandle",
        "cuIpcOpenMemHandle_v2",
        "cuIpcOpenMemHandle",
        "cuIpcCloseMemHandle",
        "cuMemGetAddressRange_v2",
        "cuMemcpyHtoD_v2",
        "cuMemcpyDtoH_v2",
        "cuMemcpyDtoD_v2",
        "cuMemsetD32_v2",
        "cuMemcpyHtoD_v2_ptds",
        "cuMemcpyDtoH_v2_ptds",
        "cuMemcpyDtoD_v2_ptds",
        "cuMemsetD32_v2_ptds",
        "cuModuleLoadData",
        "cuModuleUnload",
        "cuModuleGetFunction",
        "cuFuncGetParamInfo",
        "cuLaunchKernel",
        "cuLaunchKernel_ptsz",
    },
    "libcudart.so.12": {
        "cudaMalloc",
        "cudaFree",
        "cudaMallocAsync",
        "cudaFreeAsync",
        "cudaMallocManaged",
        "cudaMallocPitch",
        "cudaMallocHost",
        "cudaHostAlloc",
        "cudaFreeHost",
        "cudaGetDriverEntryPoint",
        "cudaGetDriverEntryPointByVersion",
        "cudaGetDriverEntryPoint_ptsz",
        "cudaGetDriverEntryPointByVersion_ptsz",
        "cudaGetLastError",
        "cudaDeviceSynchronize",
        "cudaHostRegister",
        "cudaHostUnregister",
        "cudaIpcOpenMemHandle",
        "cudaIpcCloseMemHandle",
    },
    "libframework.so": {
        "fw_alloc_segment",
        "fw_free_segment",
        "fw_alloc_async",
        "fw_free_async",
        "fw_alloc_managed",
        "fw_alloc_pitch",
        "fw_malloc_host",
        "fw_pinned",
        "fw_free_pinned",
        "fw_expandable",
        "fw_expandable_free",
        "fw_last_error",
    },
    "libascend_hal.so": {"halMemAlloc", "halMemFree", "halMemAllocInner", "halMemFreeInner"},
    "libascendcl.so": {
        "aclrtMalloc",
        "aclrtFree",
        "aclrtMallocHost",
        "aclrtFreeHost",
        "aclrtMemcpy",
        "aclrtMemset",
        "aclrtLaunchKernel",
    },
    "libmstx.so": {"mstxMarkA", "mstxRangeStartA", "mstxRangeEnd"},
    "libnvToolsExt.so.1": {"nvtxMarkA", "nvtxRangePushA", "nvtxRangePop"},
}


@pytest.mark.parametrize("lib", sorted(EXPORTS))
def test_library_exports_sonames_and_links(out, lib):
    funcs, tags = dynamic(out / lib)
    assert funcs == EXPORTS[lib], "exactly the API, nothing else exported"
    assert tags["DT_SONAME"] == [lib]
    needed = set(tags.get("DT_NEEDED", []))
    assert "libcuda.so.1" not in needed, "nothing links the driver: the runtime dlopen()s it"
    if lib == "libcuda.so.1":
        assert tags["DT_FLAGS"][0] & 0x2, "the driver is linked -Bsymbolic (DF_SYMBOLIC)"
    if lib == "libframework.so":
        assert "libcudart.so.12" in needed and tags["DT_RUNPATH"] == ["$ORIGIN"]
    if lib == "libascendcl.so":
        assert "libascend_hal.so" in needed and tags["DT_RUNPATH"] == ["$ORIGIN"]


def test_fixture_links(out):
    assert "libcudart.so.12" in dynamic(out / "device_cuda_direct")[1]["DT_NEEDED"]
    assert "libcudart.so.12" in dynamic(out / "device_churn")[1]["DT_NEEDED"]
    assert "libcudart.so.12" not in dynamic(out / "device_cuda")[1]["DT_NEEDED"]
    assert "libascendcl.so" in dynamic(out / "device_acl_linked")[1]["DT_NEEDED"]
    assert "libascendcl.so" not in dynamic(out / "device_acl")[1]["DT_NEEDED"]
    assert "DT_RUNPATH" not in dynamic(out / "device_noruntime")[1]


def test_builds_are_idempotent(out):
    before = {p: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    libs = build_standins(out)
    for name in FIXTURE_TARGETS:
        build_device_fixture(name, out)
    assert set(libs) == set(LIBRARIES)
    assert {p: p.stat().st_mtime_ns for p in before} == before, "nothing was rebuilt"


def test_frame_pointer_build_gives_the_same_results(out, tmp_path):
    """build_standins(frame_pointers=True): the same programs, the same answers."""
    fp = build_device_fixture("device_cuda", tmp_path, frame_pointers=True)
    proc = run(tmp_path, [fp.name, "local"])
    assert checksum(proc.stdout) == checksum(run(out, ["device_cuda", "local"]).stdout)
    assert site_lines(proc.stdout) == expected_lines("device_cuda")


# --- CUDA: results ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda_runs(out, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    return traced_runs(out, tmp_path_factory, CUDA_RUNS, STANDIN_REPORT="1")


@pytest.mark.parametrize("mode", [m for _, m in CUDA_RUNS])
def test_cuda_sites_match_truth(cuda_runs, mode):
    proc, _ = cuda_runs[mode]
    assert site_lines(proc.stdout) == expected_lines("device_cuda")


def test_cuda_checksum_is_the_same_in_every_mode(cuda_runs):
    sums = {mode: checksum(proc.stdout) for mode, (proc, _) in cuda_runs.items()}
    assert len(set(sums.values())) == 1, sums


@pytest.mark.parametrize("mode", [m for _, m in CUDA_RUNS])
def test_cuda_driver_served_exactly_the_truth(cuda_runs, mode):
    """The driver's own books: every device byte went through it, once."""
    proc, trace_file = cuda_runs[mode]
    totals = truth.heap_totals("device_cuda")["cuda"]
    report = driver_report(proc.stderr)
    assert report["live"] == totals["live_bytes"] == 54 * MiB
    assert report["failed"] == 0

    sites = truth.SITES["device_cuda"]

    def allocs(*apis: str) -> int:
        return sum(r["allocs"] for r in sites if r["api"] in apis)

    def frees(*apis: str) -> int:
        return sum(r["allocs"] - r["live"] for r in sites if r["api"] in apis)

    calls = Counter((t[1], t[-1]) for t in trace(trace_file) if t[0] == "cuda")
    assert (
        calls["cuMemAlloc_v2", "0"]
        == allocs("cudaMalloc", "cudaMallocPitch", "cuMemAlloc_v2")
        == 15
    )
    assert calls["cuMemAllocAsync", "0"] == allocs("cudaMallocAsync", "cuMemAllocAsync") == 4
    assert calls["cuMemAllocManaged", "0"] == allocs("cudaMallocManaged") == 1
    assert calls["cuMemCreate", "0"] == allocs("cuMemCreate") == 3
    assert calls["cuMemMap", "0"] == 3 and calls["cuMemUnmap", "0"] == 1
    assert calls["cuMemRelease", "0"] == frees("cuMemCreate") == 1
    assert calls["cuMemAddressReserve", "0"] == 2 and calls["cuMemAddressFree", "0"] == 1
    assert calls["cuMemFree_v2", "0"] == frees("cudaMalloc", "cuMemAlloc_v2") == 5
    assert calls["cuMemFreeAsync", "0"] == frees("cudaMallocAsync") == 1
    assert report["allocs"] == allocs(
        "cudaMalloc",
        "cudaMallocPitch",
        "cuMemAlloc_v2",
        "cudaMallocAsync",
        "cuMemAllocAsync",
        "cudaMallocManaged",
    )
    assert report["creates"] == 3 and report["releases"] == 1
    failed = [
        t
        for t in trace(trace_file)
        if t[0] == "cuda" and not t[1].startswith("cuGetProcAddress") and t[-1] != "0"
    ]
    assert failed == [], "no driver call failed"


@pytest.mark.parametrize("mode", [m for _, m in CUDA_RUNS])
def test_cuda_runtime_reaches_driver_only_through_cuGetProcAddress_v2(cuda_runs, mode):
    _, trace_file = cuda_runs[mode]
    lines = trace(trace_file)
    cudart = [t for t in lines if t[0] == "cudart"]
    assert cudart[0] == ["cudart", "dlopen", "libcuda.so.1", "ok"]
    assert cudart[1] == ["cudart", "dlsym", "cuGetProcAddress_v2", "ok"]
    assert sum(t[1] in ("dlopen", "dlsym") for t in cudart) == 2
    # The runtime's start, before its cuInit: NVIDIA's requests, by base name at the
    # version of the variant it wants (cuMemAlloc at 3020 gives the _v2), all through
    # the cuGetProcAddress_v2 it asked "cuGetProcAddress" for at 12000.
    start = lines[: lines.index(["cuda", "cuInit", "0"])]
    asked = lookups(trace_file.read_text())
    assert asked[: len(truth.STANDIN_RUNTIME_REQUESTS)] == [
        ("cuGetProcAddress_v2", *request) for request in truth.STANDIN_RUNTIME_REQUESTS
    ]
    assert [t for t in start if t[0] == "cuda" and not t[1].startswith("cuGetProcAddress")] == [
        ["cuda", "cuDriverGetVersion", "13000", "0"]
    ]
    assert sum(t[1].startswith("cuGetProcAddress") for t in start) == len(
        truth.STANDIN_RUNTIME_REQUESTS
    )
    # The framework's VMM entry points: two by cudaGetDriverEntryPoint, four by version.
    getters = {t[2]: t[1] for t in cudart if t[1].startswith("cudaGetDriverEntryPoint")}
    assert getters == {
        "cuMemCreate": "cudaGetDriverEntryPoint",
        "cuMemRelease": "cudaGetDriverEntryPoint",
        "cuMemAddressReserve": "cudaGetDriverEntryPointByVersion",
        "cuMemAddressFree": "cudaGetDriverEntryPointByVersion",
        "cuMemMap": "cudaGetDriverEntryPointByVersion",
        "cuMemUnmap": "cudaGetDriverEntryPointByVersion",
    }
    # The fixture's own driver sites: cuGetProcAddress_v2 and the old cuGetProcAddress.
    assert ("cuGetProcAddress_v2", "cuMemAlloc", 12000, 0, "cuMemAlloc_v2") in asked
    assert ("cuGetProcAddress", "cuMemAllocAsync", 12000, 0, "cuMemAllocAsync") in asked


def ld_debug(out: Path, argv: list[str]) -> str:
    proc = run(out, argv, LD_DEBUG="bindings,files")
    return proc.stderr


@pytest.mark.parametrize("exe,mode", CUDA_RUNS)
def test_cuda_loading_sequence_seen_by_the_loader(out, exe, mode):
    log = ld_debug(out, [exe, mode])
    cudart, libcuda = re.escape(str(out / "libcudart.so.12")), re.escape(str(out / "libcuda.so.1"))
    # The driver is loaded by the runtime's dlopen, never as a DT_NEEDED.
    assert re.search(rf"file=libcuda\.so\.1 \[0\];\s+dynamically loaded by {cudart} \[0\]", log)
    assert not re.search(r"file=libcuda\.so\.1 \[0\];\s+needed by", log)
    # Every symbol the loader ever bound in the driver: only the two entry points,
    # and before the fixture's own dlopen of it (the runtime's part) only the _v2.
    bound = re.findall(rf"binding file \S+ \[0\] to {libcuda} \[0\]: normal symbol `(\w+)'", log)
    assert set(bound) <= {"cuGetProcAddress_v2", "cuGetProcAddress"}, bound
    opened = [
        m.end() for m in re.finditer(rf"opening file={libcuda} \[0\]; direct_opencount=\d", log)
    ]
    assert len(opened) == 2, "opened by the runtime, then by the fixture's driver sites"
    runtime_part = log[opened[0] : opened[1]]
    assert re.findall(rf"to {libcuda} \[0\]: normal symbol `(\w+)'", runtime_part) == [
        "cuGetProcAddress_v2"
    ]
    assert not re.search(r"symbol `cuMem", log), "no cuMem* symbol is bound by the loader"
    # cudaMalloc is bound from the framework (or the program, linked directly).
    caller = str(out / exe) if mode == "direct" else str(out / "libframework.so")
    assert re.search(
        rf"binding file {re.escape(caller)} \[0\] to {cudart} \[0\]: "
        r"normal symbol `cudaMalloc'",
        log,
    )


PROBE_CUDA = {"local": "noload", "global": "next", "direct": "next"}


def probe_lines(stderr: str) -> dict[str, tuple[int, str]]:
    return {
        m[0]: (int(m[1]), m[2])
        for m in re.findall(r"^probe (\w+) calls=(\d+) resolved=(\w+)$", stderr, re.M)
    }


@pytest.mark.parametrize("exe,mode", CUDA_RUNS)
def test_cuda_preload_traps(out, cuda_runs, exe, mode):
    proc = run(out, [exe, mode], LD_PRELOAD=str(out / "libstandin_probe.so"))
    probe = probe_lines(proc.stderr)
    n_cuda_malloc = sum(r["allocs"] for r in truth.SITES["device_cuda"] if r["api"] == "cudaMalloc")
    assert probe["cudaMalloc"] == (n_cuda_malloc, PROBE_CUDA[mode])
    assert probe["cuMemAlloc_v2"] == (0, "none"), "a preloaded cuMemAlloc_v2 is never reached"
    assert checksum(proc.stdout) == checksum(cuda_runs[mode][0].stdout)


def test_cuda_oom(out, tmp_path):
    trace_file = tmp_path / "oom.trace"
    proc = run(
        out,
        ["device_cuda", "oom"],
        STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY),
        STANDIN_REPORT="1",
        STANDIN_TRACE=str(trace_file),
    )
    oom = truth.OOM["device_cuda"]
    assert site_lines(proc.stdout) == expected_lines("device_cuda", oom["sites"])
    failures = re.findall(r"^oom site=(\S+) requested=(\d+) error=(\d+)$", proc.stdout, re.M)
    assert failures == [(f["site"], str(f["requested"]), str(f["error"])) for f in oom["failures"]]
    report = driver_report(proc.stderr)
    assert report["failed"] == 2 and report["live"] == 32 * MiB
    assert [t for t in trace(trace_file) if t[:2] == ["cuda", "cuMemAlloc_v2"] and t[3] != "0"] == [
        ["cuda", "cuMemAlloc_v2", str(truth.GiB), "2"]
    ] * 2
    # Without a budget the mode refuses to run rather than allocate 1 GiB.
    refused = run(out, ["device_cuda", "oom"], check=False)
    assert refused.returncode == 3 and "STANDIN_DEVICE_MEMORY" in refused.stderr


# --- ACL and HAL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_runs(out, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    return traced_runs(out, tmp_path_factory, ACL_RUNS)


@pytest.mark.parametrize("mode", [m for _, m in ACL_RUNS])
def test_acl_sites_match_truth(acl_runs, mode):
    proc, _ = acl_runs[mode]
    assert site_lines(proc.stdout) == expected_lines("device_acl")


def test_acl_checksum_is_the_same_in_every_mode(acl_runs):
    assert len({checksum(proc.stdout) for proc, _ in acl_runs.values()}) == 1


@pytest.mark.parametrize("mode", [m for _, m in ACL_RUNS])
def test_hal_saw_every_allocation_with_its_flag(acl_runs, mode):
    """Each HAL allocation, ACL's included, arrives once at halMemAllocInner with
    the truth's device, memory type and module id; halMemAlloc got there directly."""
    _, trace_file = acl_runs[mode]
    lines = trace(trace_file)
    seen = Counter(
        (int(t[2]), int(t[3]), int(t[4]), int(t[5]))
        for t in lines
        if t[:2] == ["hal", "halMemAllocInner"] and t[-1] == "0"
    )
    want: Counter = Counter()
    everything = truth.SITES["device_acl"] + truth.NESTED["device_acl"]
    for rec in everything:
        if rec["heap"] == "hal":
            label = rec["label"]
            want[rec["size"], label["device"], label["memtype"], label["module"]] += rec["allocs"]
    assert seen == want
    hal = truth.heap_totals("device_acl", everything)["hal"]
    assert sum(seen.values()) == hal["allocs"] == 11
    assert sum(t[2] == "->" for t in lines if t[:2] == ["hal", "halMemAlloc"]) == hal["allocs"]
    frees = [t for t in lines if t[:2] == ["hal", "halMemFreeInner"]]
    assert len(frees) == hal["allocs"] - hal["live"] and all(t[-1] == "0" for t in frees)
    acl = [t for t in lines if t[0] == "acl"]
    assert Counter(t[1] for t in acl) == {"aclrtMalloc": 5, "aclrtFree": 1, "aclrtMallocHost": 1}


PROBE_HAL = {"local": "noload", "global": "next", "linked": "next"}


@pytest.mark.parametrize("exe,mode", ACL_RUNS)
def test_hal_preload_traps(out, acl_runs, exe, mode):
    proc = run(out, [exe, mode], LD_PRELOAD=str(out / "libstandin_probe.so"))
    probe = probe_lines(proc.stderr)
    own = sum(r["allocs"] for r in truth.SITES["device_acl"] if r["heap"] == "hal")
    from_acl = sum(r["allocs"] for r in truth.NESTED["device_acl"] if r["heap"] == "hal")
    # Through dlsym(handle) the program's own halMemAlloc calls bypass a preload;
    # ACL's calls go through its PLT and reach it in every mode.
    expected = own + from_acl if mode == "linked" else from_acl
    assert probe["halMemAlloc"] == (expected, PROBE_HAL[mode])
    assert probe["halMemAllocInner"] == (0, "none"), "halMemAlloc calls Inner without the PLT"
    assert checksum(proc.stdout) == checksum(acl_runs[mode][0].stdout)


def test_acl_oom(out):
    proc = run(out, ["device_acl", "oom"], STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    oom = truth.OOM["device_acl"]
    assert site_lines(proc.stdout) == expected_lines("device_acl", oom["sites"])
    failures = re.findall(r"^oom site=(\S+) requested=(\d+) error=(\d+)$", proc.stdout, re.M)
    assert failures == [(f["site"], str(f["requested"]), str(f["error"])) for f in oom["failures"]]
    assert run(out, ["device_acl", "oom"], check=False).returncode == 3


# --- the API's edges, called directly (ctypes in a child Python) ---------------------

EDGES = r"""
import ctypes, sys
from ctypes import POINTER, byref, c_int, c_size_t, c_uint, c_ulonglong, c_void_p
out = sys.argv[1]
def api(lib, name, *argtypes):
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = argtypes, c_int
    return fn
VP, ULL = POINTER(c_void_p), c_ulonglong
rt = ctypes.CDLL(out + "/libcudart.so.12")
cudaMalloc = api(rt, "cudaMalloc", VP, c_size_t)
cudaFree = api(rt, "cudaFree", c_void_p)
cudaMallocPitch = api(rt, "cudaMallocPitch", VP, POINTER(c_size_t), c_size_t, c_size_t)
entry = api(rt, "cudaGetDriverEntryPoint", ctypes.c_char_p, VP, ULL, POINTER(c_int))
p, fn, st = c_void_p(1), c_void_p(), c_int(-1)
assert cudaMalloc(byref(p), 0) == 0 and not p.value                 # size 0: NULL, success
assert cudaFree(None) == 0
assert cudaFree(0x1234) == 1                                         # unknown pointer
assert rt.cudaGetLastError() == 1 and rt.cudaGetLastError() == 0
assert entry(b"cuNoSuchThing", byref(fn), 0, byref(st)) == 0 and st.value == 1 and not fn.value
pitch = c_size_t()
assert cudaMallocPitch(byref(p), byref(pitch), 513, 3) == 0 and pitch.value == 1024
assert cudaFree(p) == 0 and cudaFree(p) == 1                         # double free
cu = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_LOCAL)             # the runtime's copy
gp = api(cu, "cuGetProcAddress_v2", ctypes.c_char_p, VP, c_int, ULL, POINTER(c_int))
assert gp(b"cuMemAlloc", byref(fn), 3000, 0, byref(st)) == 500 and st.value == 2
assert gp(b"cuMemAlloc_v2", byref(fn), 12000, 0, byref(st)) == 500 and st.value == 1
assert gp(b"cuMemAlloc", byref(fn), 12000, 0, byref(st)) == 0 and st.value == 0
assert fn.value == ctypes.cast(cu.cuMemAlloc_v2, c_void_p).value
assert gp(b"cuGetProcAddress", byref(fn), 12000, 0, None) == 0
assert fn.value == ctypes.cast(cu.cuGetProcAddress_v2, c_void_p).value
assert api(cu, "cuMemFree_v2", ULL)(0) == 1
create = api(cu, "cuMemCreate", POINTER(ULL), c_size_t, c_void_p, ULL)
prop = ctypes.create_string_buffer(64)
assert create(byref(ULL()), 3 << 20, ctypes.addressof(prop), 0) == 1  # not a 2 MiB multiple
hal = ctypes.CDLL(out + "/libascend_hal.so")
hal_alloc = api(hal, "halMemAlloc", VP, ULL, ULL)
hal_inner = api(hal, "halMemAllocInner", VP, ULL, ULL)
flag = lambda dev, typ, mod: dev | typ << 10 | mod << 56
q = c_void_p()
assert hal_alloc(byref(q), 4096, flag(0, 4, 0)) == 5                  # bad memory type
assert hal_alloc(byref(q), 4096, flag(16, 1, 0)) == 2                 # bad device
assert hal_inner(byref(q), 4096, flag(0, 1, 255)) == 0
assert api(hal, "halMemFree", c_void_p)(q) == 0
assert api(hal, "halMemFreeInner", c_void_p)(q) == 3                  # already freed
acl = ctypes.CDLL(out + "/libascendcl.so")
acl_malloc = api(acl, "aclrtMalloc", VP, c_size_t, c_uint)
acl_free, acl_free_host = api(acl, "aclrtFree", c_void_p), api(acl, "aclrtFreeHost", c_void_p)
assert acl_malloc(byref(q), 0, 0) == 100000 and acl_malloc(byref(q), 4096, 7) == 100000
assert acl_malloc(byref(q), 4096, 0) == 0
assert acl_free_host(q) == 207002 and acl_free(q) == 0 and acl_free(q) == 207002
print("ok")
"""


def test_api_edges(out):
    proc = subprocess.run(
        [sys.executable, "-c", EDGES, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=standin_env(out, base_env()),
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_runtime_needs_no_library_path(out):
    """RUNPATH $ORIGIN alone finds the framework, the runtime and the driver."""
    env = base_env()
    assert run(out, ["device_cuda", "local"], env=env).stdout.count("site ") == 11
    assert run(out, ["device_acl", "local"], env=env).stdout.count("site ") == 6


# --- the runtime missing, the benchmark workload, the markers ------------------------


def system_has_cudart() -> bool:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        proc = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return "libcudart.so.12 " in proc.stdout


def test_runtime_missing(out):
    if system_has_cudart():
        pytest.skip("this machine has a real libcudart.so.12 on the loader's path")
    missing = run(out, ["device_noruntime"], env=base_env())
    assert missing.stdout.startswith("runtime=missing\n")
    present = run(out, ["device_noruntime"])  # standin_env: the stand-in is found
    assert present.stdout.startswith("runtime=present\n")
    assert checksum(missing.stdout) == checksum(present.stdout)


def test_churn(out):
    proc = run(out, ["device_churn", "20000"], STANDIN_REPORT="1")
    m = re.fullmatch(
        r"pairs=20000 bytes=(\d+) seconds=([\d.]+) checksum=[0-9a-f]{16}\n", proc.stdout
    )
    assert m, proc.stdout
    assert 20000 * truth.CHURN["min_size"] <= int(m[1]) <= 20000 * truth.CHURN["max_size"]
    report = driver_report(proc.stderr)
    assert report["allocs"] == report["frees"] == 20001 and report["live"] == 0
    assert report["peak"] <= truth.CHURN["max_size"]


def test_markers(out):
    proc = run(out, ["device_markers"])
    assert "nvtx push=0 pop=0 pop_empty=-1\n" in proc.stdout
    assert "mstx id=1\n" in proc.stdout
