"""The device heaps on aarch64 (issue 26): the stand-in driver, runtime and ACL built for
arm64 and run under qemu-user with the aarch64 sampler, as tests/sampler/test_device.py
and test_device_uses.py run them on x86-64: every CUDA allocation path counted once in
its heap, exactly, and the inefficient blocks of device_uses found with the launch
counts the fixture makes."""

from __future__ import annotations

import json
import subprocess

import pytest
from standins import truth
from standins.build import build_device_fixture, standin_env
from support import arm64
from support.device import assert_blocks_exact, assert_sites, by_heap, checksum, pool_of
from support.paths import ROOT
from support.profiling import run_parser, total

pytestmark = arm64.skip_unless_arm64
KiB, MiB = 1024, 1024 * 1024


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return tmp_path_factory.mktemp("arm64_standins")


def run(standins, tmp_path, name: str, *args: str, mode: str = "table"):
    exe = build_device_fixture(name, standins, cc=arm64.CC)
    extra = ("--device-rate", "1") + (("--mode", "log") if mode == "log" else ())
    proc, files = arm64.run([exe, *args], tmp_path / "d_", 1024, *extra, env=standin_env(standins))
    assert proc.returncode == 0, proc.stderr
    return exe, proc, by_heap(files)


def test_every_cuda_path_counted_once(standins, tmp_path):
    exe, _, heaps = run(standins, tmp_path, "device_cuda", "local")
    assert {"host", "cuda", "cuda_host"} <= set(heaps)
    assert_sites(heaps, exe, truth.SITES["device_cuda"])


def test_inefficient_blocks_with_the_fixtures_launch_counts(standins, tmp_path):
    exe, proc, heaps = run(standins, tmp_path, "device_uses", mode="log")
    plain = subprocess.run(
        [arm64.QEMU, "-L", arm64.SYSROOT, exe],
        env=standin_env(standins),
        capture_output=True,
        text=True,
        check=True,
    )
    assert checksum(proc.stdout) == checksum(plain.stdout)  # the kernels' writes alike
    found = run_parser(
        "-p", exe, "-f", heaps["cuda"], "--inefficient", "--json", "--idle-threshold", "30"
    )
    report = json.loads(found.stdout)
    assert (report["launches"], report["copies_and_sets"], report["unknown_launches"]) == (
        67,
        23,
        0,
    )
    assert sorted(
        (f["kind"], f["stack"][f["stack"].index("allocate") + 1], f["size"], f["launches"])
        for f in report["findings"]
    ) == [
        ("early_allocation", "early_late_buffer", 4 * MiB, 10),
        ("early_allocation", "early_small", 4 * KiB, 10),
        ("late_deallocation", "early_late_buffer", 4 * MiB, 10),
        ("late_deallocation", "early_small", 4 * KiB, 10),
        ("temporary_idleness", "idle_buffer", 2 * MiB, 40),
    ]


def test_pytorchs_tensors_through_its_probes(standins, tmp_path):
    """The stand-in pool's probes on aarch64 (brk over their nop, arguments in x
    registers): every figure of its four sites exact in the cuda heap, its segments in
    cuda_segments; the probe-less build of a PyTorch before 2.1 says so in its report."""
    exe = build_device_fixture("device_pool", standins, cc=arm64.CC)
    proc, files = arm64.run([exe, "run"], tmp_path / "p_", 1, "--device-rate", "1",
                            env=standin_env(standins))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_blocks_exact(by_heap(files), exe, proc.stdout)
    assert pool_of(proc.stdout)[2] == 2  # the semaphores raised

    env = standin_env(standins, STANDIN_C10="libc10_cuda.so.2.0")
    proc, files = arm64.run([exe, "run"], tmp_path / "n_", 1, "--device-rate", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    heaps = by_heap(files)
    assert total(heaps["cuda"], exe, "inuse_space") == pool_of(proc.stdout)[0]
    said = "libc10_cuda.so.2.0 has no pytorch:malloc probe (PyTorch before 2.1, and its aarch64"
    assert said in run_parser("-p", exe, "-f", heaps["cuda"], "-t").stdout.splitlines()[1]


def test_the_usdt_unit_on_aarch64(tmp_path):
    """tests/sampler/unit/test_usdt.c built for aarch64 and run under qemu: the notes read,
    and aarch64's argument specs decoded and evaluated on saved registers."""
    unit = tmp_path / "test_usdt"
    subprocess.run(
        [arm64.CC, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
         "-Isampler", "-o", unit, "tests/sampler/unit/test_usdt.c", "sampler/unwind/usdt.c",
         "sampler/base/sysutil.c"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    proc = subprocess.run(
        [arm64.QEMU, "-L", arm64.SYSROOT, unit], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok arguments_evaluated\nok unreadable_specs_refused\n" in proc.stdout
