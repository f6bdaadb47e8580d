"""Inefficient device memory (mem_parser --inefficient, analyzers.check_inefficient) on
real log-mode runs of tests/fixtures/device_uses.c over the stand-in driver: its blocks
used early, late and with an idle stretch, each found with the launch counts the
fixture makes, and nothing else; the launches' parameters read as the driver declares
them; the program's results unchanged; nothing recorded in table mode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from standins.build import build_device_fixture, standin_env
from support.device import checksum, run_device
from support.profiling import profile_run, run_parser

from mem_profiler.core.heaps import HEAPS
from mem_profiler.parser.log.analysis import open_window_log
from mem_profiler.parser.msmemscope import analyzers
from mem_profiler.parser.read.event_log import USE_OPS, USE_PARAMS_UNKNOWN
from mem_profiler.parser.read.heap_file import read_heap

KiB, MiB = 1024, 1024 * 1024
# the fixture's blocks by their allocation site: (bytes, launches) of each finding
EARLY = {"early_late_buffer": (4 * MiB, 10), "early_small": (4 * KiB, 10)}
LATE = EARLY
IDLE = {"idle_buffer": (2 * MiB, 40)}
LAUNCHES, COPIES_AND_SETS = 67, 23  # 10 + 1 + 10 + 5 + 1 + 40; 20 + 2 copies and a set


@pytest.fixture(scope="module")
def capture(standin_dir, tmp_path_factory):
    """(program, cuda .heap) of device_uses in log mode, its checksum the plain run's."""
    exe = build_device_fixture("device_uses", standin_dir)
    env = standin_env(standin_dir)
    plain = subprocess.run([exe], env=env, capture_output=True, text=True, check=True)
    proc, heaps = run_device(exe, [], tmp_path_factory.mktemp("uses") / "u_", env, "--mode", "log")
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain.stdout)
    return exe, heaps["cuda"]


def findings(exe, heap, *args: str) -> dict:
    proc = run_parser("-p", exe, "-f", heap, "--inefficient", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_kind(report: dict) -> dict[str, dict[str, tuple[int, int]]]:
    """{kind: {allocation site: (bytes, launches)}}; the site is the stack's frame
    below the fixture's allocate()."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for f in report["findings"]:
        site = f["stack"][f["stack"].index("allocate") + 1]
        assert site not in out.setdefault(f["kind"], {})
        out[f["kind"]][site] = (f["size"], f["launches"])
    return out


def test_early_late_and_idle_blocks_found_with_their_launch_counts(capture):
    exe, heap = capture
    report = findings(exe, heap, "--idle-threshold", "30")
    assert by_kind(report) == {
        "early_allocation": EARLY,
        "late_deallocation": LATE,
        "temporary_idleness": IDLE,
    }
    assert (report["launches"], report["copies_and_sets"]) == (LAUNCHES, COPIES_AND_SETS)
    assert (report["unknown_launches"], report["truncated"], report["unused"]) == (0, 0, 0)
    assert report["notes"] == []
    # idle only beyond the threshold: 40 launches are idle at 39, not at 40
    assert by_kind(findings(exe, heap, "--idle-threshold", "39"))["temporary_idleness"] == IDLE
    assert "temporary_idleness" not in by_kind(findings(exe, heap, "--idle-threshold", "40"))
    assert "temporary_idleness" not in by_kind(findings(exe, heap))  # 3000 by default


def test_mem_size_and_types_choose_what_is_reported(capture):
    exe, heap = capture
    report = findings(exe, heap, "--mem-size", "1MiB", "--inefficient-type", "early_allocation")
    assert by_kind(report) == {"early_allocation": {"early_late_buffer": (4 * MiB, 10)}}
    # 3 blocks of 1 MiB or more: early_late_buffer, quiet_buffer, idle_buffer
    assert (report["kinds"], report["blocks"]) == (["early_allocation"], 3)


def test_every_operation_and_its_values_are_in_the_log(capture):
    """Each launch of touch() passes its block (a pointer parameter, the u32 beside it
    left out), each touch_pair() both of its struct's pointers, copies and the set their
    device ends; every value is a block's address at its time."""
    exe, heap = capture
    cap = open_window_log(heap)
    uses, values = cap.log.uses, cap.log.use_values
    assert sorted(uses["count"].tolist()) == [1] * 67 + [2] * 23
    blocks = {int(a) for a in cap.allocs.address}
    stack_copies = [v for v in values.tolist() if v not in blocks]
    assert len(stack_copies) == 22  # the host ends of the copies: the fixture's stack


def test_api_matches_the_command(capture, capsys):
    exe, heap = capture
    result = analyzers.analyze(
        "inefficient", input_path=str(heap), idle_threshold=30, binary=str(exe)
    )
    printed = capsys.readouterr().out
    assert [(f.kind, f.size, f.launches) for f in result.findings] == [
        ("early_allocation", 4 * MiB, 10),
        ("early_allocation", 4 * KiB, 10),
        ("late_deallocation", 4 * MiB, 10),
        ("late_deallocation", 4 * KiB, 10),
        ("temporary_idleness", 2 * MiB, 40),
    ]
    assert "idle for 40 launches between two uses" in printed and "idle_buffer" in printed
    assert analyzers.get_analyzer_config("inefficient")["idle_threshold"]["required"] is False
    with pytest.raises(Exception, match="inefficient type 'soon'"):
        analyzers.check_inefficient(str(heap), inefficient_type=["soon"])


def test_unreadable_parameters_are_counted_and_said(standin_dir, tmp_path):
    """A driver before CUDA 12.4 does not tell a kernel's parameters: the launches are
    operations whose uses are unknown, and the report says how many."""
    exe = build_device_fixture("device_uses", standin_dir)
    env = standin_env(standin_dir, STANDIN_DRIVER_VERSION="12030")
    proc, heaps = run_device(exe, [], tmp_path / "old_", env, "--mode", "log")
    assert proc.returncode == 0, proc.stderr
    report = findings(exe, heaps["cuda"])
    # touch_pair's launch passes a buffer with its size (`extra`): read; the rest not
    assert (report["launches"], report["unknown_launches"]) == (LAUNCHES, LAUNCHES - 1)
    assert any("66 of 67 launches" in note for note in report["notes"])


def test_table_mode_forwards_every_operation(standin_dir, tmp_path):
    """Without a log the hooks only forward: the kernels' writes and the copies read back
    are the plain run's, and every allocation is in the profile."""
    exe = build_device_fixture("device_uses", standin_dir)
    env = standin_env(standin_dir)
    plain = subprocess.run([exe], env=env, capture_output=True, text=True, check=True)
    proc, heaps = run_device(exe, [], tmp_path / "t_", env)
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain.stdout)
    assert not list(tmp_path.glob("t_*.memlog"))
    assert read_heap(heaps["cuda"]).acc_objs.sum() == 25  # 21 scratch blocks, 4 others


ACL_SCRIPT = r"""
import ctypes
from ctypes import byref, c_int, c_size_t, c_uint, c_void_p

acl = ctypes.CDLL("libascendcl.so")
for name, types in (("aclrtMalloc", (ctypes.POINTER(c_void_p), c_size_t, c_int)),
                    ("aclrtFree", (c_void_p,)),
                    ("aclrtMemcpy", (c_void_p, c_size_t, c_void_p, c_size_t, c_int)),
                    ("aclrtMemset", (c_void_p, c_size_t, c_int, c_size_t)),
                    ("aclrtLaunchKernel", (c_void_p, c_uint, c_void_p, c_size_t, c_void_p))):
    getattr(acl, name).argtypes, getattr(acl, name).restype = types, c_int
data, args = c_void_p(), c_void_p()
assert acl.aclrtMalloc(byref(data), 1 << 20, 0) == 0 and acl.aclrtMalloc(byref(args), 64, 0) == 0
host = ctypes.create_string_buffer(b"x" * 4096)
assert acl.aclrtMemcpy(data, 1 << 20, host, 4096, 1) == 0
for _ in range(3):
    assert acl.aclrtLaunchKernel(c_void_p(1), 1, args, 64, None) == 0
assert acl.aclrtMemset(data, 1 << 20, 0, 4096) == 0
assert acl.aclrtMemcpy(host, 4096, data, 4096, 2) == 0
assert acl.aclrtFree(data) == 0 and acl.aclrtFree(args) == 0
print(data.value, args.value, ctypes.addressof(host))
"""


def test_acl_operations_are_recorded_and_its_launches_said_unreadable(standin_dir, tmp_path):
    """ACL's copies and set are uses of the blocks they touch; its launches pass their
    arguments in device memory, which the host cannot read: each is a use of that
    block, and the report says the rest of their uses are unknown."""
    build_device_fixture("device_acl", standin_dir)
    proc, files = profile_run(
        [sys.executable, "-c", ACL_SCRIPT],
        tmp_path / "a_",
        1,
        "--device-rate",
        "1",
        "--mode",
        "log",
        env=standin_env(standin_dir),
    )
    assert proc.returncode == 0, proc.stderr
    data, args, host = map(int, proc.stdout.split())
    (heap,) = [f for f in files if f.name.endswith(".acl.heap")]
    log = open_window_log(heap).log
    ops = [
        (
            USE_OPS[u["op"]],
            HEAPS[u["heap"]],
            int(u["flags"]),
            log.use_values[u["first"] : u["first"] + u["count"]].tolist(),
        )
        for u in log.uses
    ]
    assert ops == [
        ("copy", "acl", 0, [data, host]),
        *[("launch", "acl", USE_PARAMS_UNKNOWN, [args])] * 3,
        ("set", "acl", 0, [data]),
        ("copy", "acl", 0, [host, data]),
    ]
    report = findings(sys.executable, heap, "--idle-threshold", "2")
    assert (report["launches"], report["unknown_launches"]) == (3, 3)
    assert [(f["kind"], f["size"], f["launches"]) for f in report["findings"]] == [
        ("temporary_idleness", 1 << 20, 3)
    ]
    assert any("3 of 3 launches" in note for note in report["notes"])
