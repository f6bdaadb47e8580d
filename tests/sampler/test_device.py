"""Device and HAL heaps (ARCHITECTURE.md, "Device and HAL allocators") through stand-in
libraries loaded the way the real ones are: every path seen with the right bytes and
stack, nothing counted twice, the program's results unchanged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from standins import truth
from standins.build import build_device_fixture, standin_env
from support.device import (
    assert_foreign,
    assert_sites,
    called_as,
    checksum,
    failures_listed,
    foreign_calls,
    live_at_failure,
    run_device,
)
from support.heap_files import heap_text
from support.jeprof import to_jeprof
from support.paths import MEM_PARSER
from support.profiling import report, run_parser

from mem_profiler.parser.read.heap_file import read_heap


def profile_unchanged(
    program: str, mode: str, standin_dir: Path, prefix: Path
) -> tuple[Path, dict[str, Path]]:
    """Runs a fixture without and with the sampler: the same results; its heap files."""
    exe = build_device_fixture(program, standin_dir)
    env = standin_env(standin_dir)
    plain = subprocess.run([exe, mode], env=env, capture_output=True, text=True, check=True)
    proc, heaps = run_device(exe, [mode], prefix, env)
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain.stdout)
    return exe, heaps


@pytest.mark.parametrize(
    "program,mode",
    [("device_cuda", "local"), ("device_cuda", "global"), ("device_cuda_direct", "direct")],
)
def test_every_cuda_path_counted_once(standin_dir, tmp_path, program, mode):
    exe, heaps = profile_unchanged(program, mode, standin_dir, tmp_path / "c_")
    assert {"host", "cuda", "cuda_host"} <= set(heaps)
    assert_sites(heaps, exe, truth.SITES["device_cuda"])


@pytest.mark.parametrize(
    "program,mode",
    [("device_acl", "local"), ("device_acl", "global"), ("device_acl_linked", "linked")],
)
def test_acl_and_hal_paths_counted_once_with_labels(standin_dir, tmp_path, program, mode):
    exe, heaps = profile_unchanged(program, mode, standin_dir, tmp_path / "a_")
    assert_sites(heaps, exe, truth.SITES["device_acl"])
    # The HAL's flags become labels of its stacks: device id, memory type, module id.
    labels = read_heap(heaps["hal"]).labels.values()
    memtypes = "SVM DEV HOST DVPP".split()
    expected = {
        f"device={r['label']['device']} memtype={memtypes[r['label']['memtype']]} "
        f"module={r['label']['module']}"
        for r in truth.SITES["device_acl"]
        if r["heap"] == "hal"
    }
    assert set(labels) == expected


@pytest.mark.parametrize("program", ["device_cuda", "device_acl"])
def test_failed_device_allocations_are_recorded_once(standin_dir, tmp_path, program):
    exe = build_device_fixture(program, standin_dir)
    env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    proc, heaps = run_device(exe, ["oom"], tmp_path / "o_", env)
    assert proc.returncode == 0, proc.stderr
    assert_sites(heaps, exe, truth.OOM[program]["sites"])
    for heap, failures in truth.by_heap("", truth.OOM[program]["failures"]).items():
        text = heap_text(heaps[heap])
        recorded = re.findall(
            r"^# failed_alloc: time_ns=\d+ bytes=(\d+) error=(\d+) stack=", text, re.M
        )
        assert sorted(recorded) == sorted(
            (str(f["requested"]), str(f["error"])) for f in failures.values()
        )
        assert f"# failed_allocs: {len(failures)}\n" in text


def test_missing_runtime_leaves_the_process_unaffected(standin_dir, tmp_path):
    exe = build_device_fixture("device_noruntime", standin_dir)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    plain = subprocess.run([exe], env=env, capture_output=True, text=True, check=True)
    proc, heaps = run_device(exe, [], tmp_path / "n_", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == plain.stdout
    assert set(heaps) == {"host"}
    assert report(heaps["host"], exe)["host_work"][1] == 64 * 64 * 1024


def test_parser_picks_heaps_shows_them_side_by_side_and_colours_them(standin_dir, tmp_path):
    exe = build_device_fixture("device_cuda", standin_dir)
    proc, heaps = run_device(exe, ["local"], tmp_path / "p_", standin_env(standin_dir))
    assert proc.returncode == 0, proc.stderr
    prefix = str(heaps["host"]).removesuffix(".heap")

    def parse(*args: str) -> str:
        return run_parser("-p", exe, *args, timeout=60).stdout

    # A capture's prefix means all its heaps: side by side in -t.
    side = parse("-f", prefix, "-t").splitlines()
    assert side[0] == "Total MB: host 0.0, cuda 54.0, cuda_host 1.5"
    assert side[1].split() == [
        "host",
        "flat",
        "host",
        "cum",
        "cuda",
        "flat",
        "cuda",
        "cum",
        "cuda_host",
        "flat",
        "cuda_host",
        "cum",
    ]
    assert side[2].split() == ["0.0", "0.0", "32.0", "32.0", "0.0", "0.0", "fw_alloc_segment"]
    assert parse("-f", str(heaps["host"]), "-f", str(heaps["cuda"]), "-t").startswith(
        "Total MB: host 0.0, cuda 54.0\n"
    )
    # --heap picks one; its graph and flame graph draw in the heap's own hue (blue).
    assert parse("-f", prefix, "--heap", "cuda", "-t").startswith("Total: 54.0 MB\n")
    svg = parse("-f", prefix, "--heap", "cuda", "-s")
    assert "Heap: cuda" in svg and 'fill="#d' in svg.lower()
    flame = tmp_path / "f.html"
    parse("-f", prefix, "--heap", "cuda_host", "--flame", str(flame))
    assert '"heap":"cuda_host","hue":265' in flame.read_text()
    # Several heaps are for -t only; a heap the capture lacks is refused.
    for args, message in (
        (
            ["-f", prefix, "-s"],
            "side by side only in a plain -t; for that report choose one with --heap",
        ),
        (["-f", prefix, "-t", "--focus", "fw_"], "for --focus choose one"),
        (["-f", prefix, "-t", "--lines"], "for --lines choose one"),
        (["-f", prefix, "-t", "--peak"], "for that report choose one"),
        (["-f", prefix, "--heap", "hal", "-t"], "no hal heap among"),
    ):
        done = subprocess.run([MEM_PARSER, "-p", str(exe), *args], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


def test_text_report_lists_failed_device_allocations(standin_dir, tmp_path):
    exe = build_device_fixture("device_cuda", standin_dir)
    env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    proc, heaps = run_device(exe, ["oom"], tmp_path / "o_", env)
    assert proc.returncode == 0, proc.stderr
    section = failures_listed(exe, heaps, "cuda", 2)
    assert len(section) == 2
    assert all(line.split()[:6] == ["1024.0", "MB", "error", "2", "(out", "of"] for line in section)
    # The stacks name the sites (under the framework's frame for the runtime's failure).
    assert any(" alloc_too_much < run_oom" in line for line in section)
    assert any(" alloc_too_much_driver < run_oom" in line for line in section)


@pytest.mark.parametrize(
    "program, heap, error", [("device_cuda", "cuda", 2), ("device_acl", "acl", 207001)]
)
@pytest.mark.parametrize("mode", ["table", "log"])
def test_what_was_live_when_a_device_allocation_ran_out_of_memory(
    standin_dir, tmp_path, program, heap, error, mode
):
    """A program that calls CUDA or ACL itself asks for 1 GiB more than the device has:
    the window's files as they were at that failure are written beside its own, what it
    kept then exact in them, under the line that says which allocation failed; in
    table mode as in log mode, unasked."""
    exe = build_device_fixture(program, standin_dir)
    env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    proc, heaps = run_device(exe, ["oom"], tmp_path / "o_", env, "--mode", mode)
    assert proc.returncode == 0, proc.stderr
    at_failure = live_at_failure(proc.stderr)
    assert set(at_failure) == set(heaps)
    assert_sites(at_failure, exe, truth.OOM[program]["sites"])
    text = run_parser("-p", exe, "-f", at_failure[heap], "-t").stdout
    assert text.splitlines()[1] == (
        f"Taken as an allocation of 1024.0 MB in the {heap} heap failed, out of memory"
        f" (error {error}): what was live then."
    )


FAILURE_STORM = r"""
import ctypes, sys
from ctypes import byref, c_size_t, c_uint, c_ulonglong, c_void_p
cu = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_LOCAL)   # dlsym on its handle: the wrappers
assert cu.cuInit(0) == 0
block, host = c_ulonglong(), c_void_p()
for _ in range(70):
    assert cu.cuMemAlloc_v2(byref(block), c_size_t(2 << 20)) == 2        # out of memory
for _ in range(3):
    assert cu.cuMemHostAlloc(byref(host), c_size_t(4096), c_uint(99)) == 1   # bad flags
"""


def test_failed_allocations_are_counted_per_heap_every_one(standin_dir, tmp_path):
    """70 failures in the cuda heap: all counted, the first 64 kept; the 3 of the
    cuda_host heap after them are counted and kept all the same."""
    build_device_fixture("device_cuda", standin_dir)
    env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(1 << 20))
    proc, heaps = run_device(Path(sys.executable), ["-c", FAILURE_STORM], tmp_path / "s_", env)
    assert proc.returncode == 0, proc.stderr
    for heap, count, kept, line in (
        ("cuda", 70, 64, "bytes=2097152 error=2"),
        ("cuda_host", 3, 3, "bytes=4096 error=1"),
    ):
        text = heap_text(heaps[heap])
        assert f"# failed_allocs: {count}\n" in text
        assert (
            re.findall(r"^# failed_alloc: time_ns=\d+ (bytes=\d+ error=\d+) stack=", text, re.M)
            == [line] * kept
        )
    # each listed by the Python line that asked (ctypes' native frames beneath it left out,
    # as a stack with Python frames shows those alone)
    for listed in failures_listed(Path(sys.executable), heaps, "cuda_host", 3)[:3]:
        assert listed.endswith(" error 1 (invalid argument)  <module> (<string>)"), listed


DEVICE_AND_HOST = r"""
import ctypes, json
from ctypes import byref, c_size_t, c_ulonglong
cu = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_LOCAL)
assert cu.cuInit(0) == 0
def on_device():
    block = c_ulonglong()
    assert cu.cuMemAlloc_v2(byref(block), c_size_t(1 << 20)) == 0
    return block
def on_host():
    return [json.dumps(list(range(i % 50))) for i in range(20000)]
kept = on_device(), on_host()
"""


def python_records(path: Path) -> tuple[set[int], set[int]]:
    """The Python frame records a heap file holds, and those its stacks name."""
    profile = read_heap(path)
    named = {int(a) for a in profile.addrs.tolist() if int(a) in profile.python_frames}
    return set(profile.python_frames), named


def test_a_device_heap_file_holds_the_python_frames_its_stacks_name(standin_dir, tmp_path):
    """A Python program's thousands of host stacks do not make its cuda heap's file
    carry their Python frames: each file holds those its own stacks name."""
    build_device_fixture("device_cuda", standin_dir)
    env = standin_env(standin_dir)
    proc, heaps = run_device(Path(sys.executable), ["-c", DEVICE_AND_HOST], tmp_path / "p_", env)
    assert proc.returncode == 0, proc.stderr
    held, named = python_records(heaps["cuda"])
    assert held == named and 0 < len(held) < 10, held
    host_held, host_named = python_records(heaps["host"])
    assert host_held == host_named and len(host_held) > 10 * len(held)
    cuda = report(heaps["cuda"], Path(sys.executable))
    assert cuda["on_device (<string>)"][1] == 1 << 20, cuda


ENTRY_POINTS = r"""
import ctypes
from ctypes import CFUNCTYPE, POINTER, byref, c_char_p, c_int, c_size_t, c_uint, c_ulonglong
from ctypes import c_void_p
libc = ctypes.CDLL(None)


class DlInfo(ctypes.Structure):
    _fields_ = [("fname", c_char_p), ("fbase", c_void_p), ("sname", c_char_p),
                ("saddr", c_void_p)]


def name_of(address):
    info = DlInfo()
    assert libc.dladdr(c_void_p(address), byref(info)) and info.saddr == address
    return info.fname.decode().rsplit("/", 1)[1] + ":" + info.sname.decode()


def api(lib, name, *argtypes):
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = argtypes, c_int
    return fn


VP, ULL, IP = POINTER(c_void_p), c_ulonglong, POINTER(c_int)
ALLOC = CFUNCTYPE(c_int, POINTER(ULL), c_size_t, c_void_p)
fn, status, block = c_void_p(), c_int(-1), ULL()
rt = ctypes.CDLL("libcudart.so.12")
for size, (getter, *args) in enumerate((("cudaGetDriverEntryPoint", 2),
                                        ("cudaGetDriverEntryPoint_ptsz", 2),
                                        ("cudaGetDriverEntryPointByVersion", 12000, 2),
                                        ("cudaGetDriverEntryPointByVersion_ptsz", 12000, 2)), 1):
    types = (c_uint, ULL) if len(args) == 2 else (ULL,)
    assert api(rt, getter, c_char_p, VP, *types, IP)(b"cuMemAllocAsync", byref(fn), *args,
                                                      byref(status)) == 0 == status.value
    print(getter, name_of(fn.value))
    assert ALLOC(fn.value)(byref(block), size << 20, None) == 0
cu = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_LOCAL)
v2 = api(cu, "cuGetProcAddress_v2", c_char_p, VP, c_int, ULL, IP)
for version in (11030, 12000):
    assert v2(b"cuGetProcAddress", byref(fn), version, 0, byref(status)) == 0
    print("cuGetProcAddress", version, name_of(fn.value))
assert v2(b"cuGetProcAddress", byref(fn), 11030, 0, byref(status)) == 0
v1 = CFUNCTYPE(c_int, c_char_p, VP, c_int, ULL)(fn.value)
assert v1(b"cuMemAlloc", byref(fn), 3020, 0) == 0
print("v1 cuMemAlloc 3020", name_of(fn.value))
assert v2(b"cuMemAlloc", byref(fn), 2000, 0, byref(status)) == 500 and status.value == 2
print("v2 cuMemAlloc 2000", fn.value)
"""


def test_getters_hand_out_the_variant_asked_for_wrapped(standin_dir, tmp_path):
    """cudaGetDriverEntryPoint[ByVersion][_ptsz] with the per-thread default stream's
    flag give the wrapper of cuMemAllocAsync_ptsz (whose allocations are seen);
    cuGetProcAddress at 11030 and 12000 the wrappers of the four- and five-argument
    getters; the 32-bit cuMemAlloc of version 2000 is nobody's: nothing is handed out."""
    build_device_fixture("device_cuda", standin_dir)
    proc, heaps = run_device(
        Path(sys.executable), ["-c", ENTRY_POINTS], tmp_path / "e_", standin_env(standin_dir)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "cudaGetDriverEntryPoint libmemprof.so:cuMemAllocAsync_ptsz",
        "cudaGetDriverEntryPoint_ptsz libmemprof.so:cuMemAllocAsync_ptsz",
        "cudaGetDriverEntryPointByVersion libmemprof.so:cuMemAllocAsync_ptsz",
        "cudaGetDriverEntryPointByVersion_ptsz libmemprof.so:cuMemAllocAsync_ptsz",
        "cuGetProcAddress 11030 libmemprof.so:cuGetProcAddress",
        "cuGetProcAddress 12000 libmemprof.so:cuGetProcAddress_v2",
        "v1 cuMemAlloc 3020 libmemprof.so:cuMemAlloc_v2",
        "v2 cuMemAlloc 2000 None",
    ]
    profile = read_heap(heaps["cuda"])  # the four from one line of Python: one stack
    assert (profile.acc_objs.tolist(), profile.acc_bytes.tolist()) == ([4], [10 << 20])


# --- memory registered with CUDA or opened through IPC: listed, never counted ----------


@pytest.fixture(scope="module")
def foreign_run(standin_dir, tmp_path_factory):
    """device_foreign over the stand-in runtime, without and with the sampler."""
    exe = build_device_fixture("device_foreign", standin_dir)
    runtime = str(standin_dir / "libcudart.so.12")
    env = standin_env(standin_dir)
    plain = subprocess.run([exe, runtime], env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    proc, heaps = run_device(exe, [runtime], tmp_path_factory.mktemp("foreign") / "f_", env)
    assert proc.returncode == 0, proc.stderr
    return exe, plain, proc, heaps


def test_registered_and_opened_memory_is_listed_never_counted(foreign_run):
    """Host memory registered with CUDA and another process's device memory opened
    through IPC, by the runtime and by both versions of the driver's functions: each
    range registered or open at the end is in its heap's file with its address, bytes
    and stack (an IPC range's bytes from the driver), one opened twice and closed once
    as well; what was unregistered or closed is not; the heaps count only the program's
    own allocations."""
    exe, plain, proc, heaps = foreign_run
    assert checksum(proc.stdout) == checksum(plain.stdout)
    calls = foreign_calls(proc.stdout)
    assert {site: via for site, (via, _, _) in foreign_calls(plain.stdout).items()} == called_as(
        "libcudart.so.12", "libcuda.so.1"
    )
    assert {site: via for site, (via, _, _) in calls.items()} == called_as(
        "libmemprof.so", "libmemprof.so"
    )
    assert {error for _, _, error in calls.values()} == {0}
    assert calls["drv_ipc_reopen"][1] == calls["drv_ipc_open"][1], "one mapping, two opens"
    assert_foreign(heaps, exe, calls, [site for site, rec in truth.FOREIGN_SITES.items() if rec[4]])
    assert_sites(heaps, exe, truth.SITES["device_foreign"])


def test_text_and_json_reports_list_the_foreign_ranges(foreign_run):
    exe, _, proc, heaps = foreign_run
    calls = foreign_calls(proc.stdout)

    def parse(heap: str, fmt: str) -> str:
        return run_parser("-p", exe, "-f", heaps[heap], fmt).stdout

    text = parse("cuda_host", "-t")
    assert text.startswith("Total: 1.0 MB\n")  # drv_alloc_host alone
    header = (
        "\nMemory registered with CUDA or opened from another process (not counted in"
        " the cuda_host heap): 3 ranges, 0.8 MB\n"
    )
    section = text.split(header)[1].splitlines()
    assert [line.split()[:4] for line in section] == [
        ["0.2", "MB", "host_register", hex(calls["rt_register"][1])],
        ["0.5", "MB", "host_register", hex(calls["drv_register"][1])],
        ["64.0", "kB", "host_register", hex(calls["drv_register_v1"][1])],
    ]
    assert " rt_register_range < rt_register < runtime_sites < main" in section[0]
    assert " drv_register_range < drv_register < driver_sites < main" in section[1]
    assert " drv_register_range < drv_register_v1 < driver_sites < main" in section[2]

    document = json.loads(parse("cuda", "--json"))
    assert document["total"] == 1 << 20  # drv_alloc alone
    ranges = document["foreign"]["ranges"]
    assert document["foreign"]["unrecorded"] == 0
    assert [(r["kind"], r["address"], r["bytes"], r["stack"][:2]) for r in ranges] == [
        ("ipc_open", calls["rt_ipc_open"][1], 4 << 20, ["rt_open_handle", "rt_ipc_open"]),
        ("ipc_open", calls["drv_ipc_open"][1], 2 << 20, ["drv_open_handle", "drv_ipc_open"]),
        ("ipc_open", calls["drv_ipc_open_v1"][1], 3 << 20, ["drv_open_handle", "drv_ipc_open_v1"]),
    ]


FOREIGN_STORM = r"""
import ctypes, mmap
from ctypes import c_size_t, c_uint, c_void_p
cu = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_LOCAL)   # dlsym on its handle: the wrappers
assert cu.cuInit(0) == 0
register, unregister = cu.cuMemHostRegister_v2, cu.cuMemHostUnregister
register.argtypes, unregister.argtypes = (c_void_p, c_size_t, c_uint), (c_void_p,)
pages = mmap.mmap(-1, 80 * 4096)
page = [ctypes.addressof(ctypes.c_char.from_buffer(pages)) + 4096 * i for i in range(80)]
for p in page[:70]:
    assert register(p, 4096, 0) == 0
for p in page[:10] + page[64:66]:   # 10 of those noted, 2 of those the table had no room for
    assert unregister(p) == 0
for p in page[70:74]:
    assert register(p, 4096, 0) == 0
print(" ".join(str(p) for p in page[10:64] + page[70:74]))
"""


def test_foreign_ranges_beyond_the_table_are_counted(standin_dir, tmp_path):
    """64 ranges of a heap are noted at a time; 6 registered while the table was full are
    counted (their unregistering takes no other note away), and ranges registered once
    unregistering made room are noted again."""
    build_device_fixture("device_foreign", standin_dir)
    proc, heaps = run_device(
        Path(sys.executable), ["-c", FOREIGN_STORM], tmp_path / "s_", standin_env(standin_dir)
    )
    assert proc.returncode == 0, proc.stderr
    profile = read_heap(heaps["cuda_host"])
    assert profile.meta["foreign_unrecorded"] == "6"
    assert [(f.kind, f.address, f.bytes) for f in profile.foreign] == [
        ("host_register", int(p), 4096) for p in proc.stdout.split()
    ]
    assert (profile.acc_objs.sum(), len(profile.failures)) == (0, 0)
    text = subprocess.run(
        [MEM_PARSER, "-p", sys.executable, "-f", str(heaps["cuda_host"]), "-t"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "\nMemory registered with CUDA or opened from another process (not counted in the"
        " cuda_host heap): 58 ranges, 0.2 MB (6 more not recorded: the sampler's table"
        " was full)\n"
    ) in text


def test_device_heaps_convert_to_jeprof_text_whole(standin_dir, tmp_path, foreign_run):
    """mem_parser --jeprof of each device heap reads back as the same profile: the HAL's
    labels, the failed allocations and the foreign ranges among its `#` lines."""
    exe = build_device_fixture("device_acl", standin_dir)
    proc, labelled = run_device(exe, ["local"], tmp_path / "l_", standin_env(standin_dir))
    assert proc.returncode == 0, proc.stderr
    oom_env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    proc, failed = run_device(exe, ["oom"], tmp_path / "o_", oom_env)
    assert proc.returncode == 0, proc.stderr
    files = [*labelled.values(), *failed.values(), *foreign_run[3].values()]
    profiles = [
        read_heap(to_jeprof(heap, tmp_path / f"{i}.heap_v2")) for i, heap in enumerate(files)
    ]
    assert any(p.labels for p in profiles) and any(p.failures for p in profiles)
    assert any(p.foreign for p in profiles)
