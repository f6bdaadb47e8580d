"""NVIDIA's own CUDA runtimes (11.8, 12.1, 12.4, 12.9 and 13.0, from PyPI) over the
stand-in driver, with tests/fixtures/device_cuda_api.c.  The runtime starts as on a
GPU machine (it dlopens the driver RTLD_LOCAL, looks up cuGetProcAddress[_v2] in
it, fetches several hundred entry points through it, calls cuDriverGetVersion and
cuInit) and stops where it asks for NVIDIA's private export tables, which the
stand-in refuses: nothing here goes past the runtime's validation of its driver.
What is checked is what that start decides:

- the runtime's table of driver functions holds the sampler's wrapper for every
  memory entry point it fetched (read from its writable data), and the driver's
  own function for nothing but the seven others;
- every runtime allocation call is recorded, as the failed allocation it is, with
  its bytes, the runtime's error and its site's stack, in the heap it belongs to, and
  none is taken for the device running out of memory;
- every driver-API allocation entry point, with its exact bytes, in the same
  process; the program's results are the same with and without the sampler;
- its host-memory registrations and IPC opens (tests/fixtures/device_foreign.c) go
  through the sampler's wrappers and fail as without it, noted nowhere, while the
  driver's own in the same process are listed, as over the stand-in runtime."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from standins import truth
from standins.build import build_device_fixture, standin_env
from support.device import (
    assert_foreign,
    assert_runtime_failures,
    assert_sites,
    called_as,
    checksum,
    failures_listed,
    foreign_calls,
    lookups,
    other_functions,
    run_device,
    runtime_calls,
    table,
    wrapped,
)
from support.nvidia_runtime import RUNTIMES, runtime_library

VERSIONS = list(RUNTIMES)
CUDA_ERROR_NOT_SUPPORTED = 801
# How many entry points each runtime asks the driver for at start.
REQUESTS = {"11.8": 384, "12.1": 383, "12.4": 409, "12.9": 419, "13.0": 440}


@pytest.fixture(scope="module")
def exe(standin_dir) -> Path:
    return build_device_fixture("device_cuda_api", standin_dir)


@pytest.fixture(scope="module", params=VERSIONS)
def runtime(request) -> tuple[str, Path]:
    return request.param, runtime_library(request.param)


@pytest.fixture(scope="module")
def plain_runs(exe, standin_dir, runtime, tmp_path_factory):
    """Without the sampler: the run, and the stand-in driver's trace of the runtime's
    start (up to its last request, for an export table)."""
    version, lib = runtime
    trace = tmp_path_factory.mktemp("trace") / f"{version}.trace"
    proc = subprocess.run(
        [exe, str(lib)],
        env=standin_env(standin_dir, STANDIN_TRACE=str(trace)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = trace.read_text()
    end = text.rindex("cuda cuGetExportTable ")
    return proc, text[: text.index("\n", end) + 1]


def test_nvidia_runtime_starts_up_to_the_export_tables(runtime, plain_runs):
    """What NVIDIA's runtime asks of the driver, and where it stops."""
    version, _ = runtime
    proc, start = plain_runs
    getter = "cuGetProcAddress" if version == "11.8" else "cuGetProcAddress_v2"
    requests = lookups(start)
    assert {r[0] for r in requests} == {getter}, "one getter, the one dlsym found"
    asked = {r[1:4]: r[4] for r in requests}
    assert {v for k, v in asked.items() if k in truth.NVIDIA_RUNTIME_REQUESTS} == wrapped(version)
    assert all(asked[k] == v for k, v in truth.NVIDIA_RUNTIME_REQUESTS.items() if k in asked)
    assert {asked.get(k) for k in truth.NVIDIA_RUNTIME_REQUESTS_OF_A_GPU} == {"-"}, (
        "asked for, and not found in the stand-in"
    )
    assert len(requests) == REQUESTS[version], "the runtime fetches its whole table at start"
    calls = [t.split() for t in start.splitlines() if not t.startswith("cuda cuGetProcAddress")]
    assert ["cuda", "cuInit", "0"] in calls
    assert ["cuda", "cuDriverGetVersion", "13000", "0"] in calls
    assert calls[-1][1] == "cuGetExportTable" and calls[-1][-1] == str(CUDA_ERROR_NOT_SUPPORTED)
    assert re.search(r"^start error=801$", proc.stdout, re.M)
    assert runtime_calls(proc.stdout) == {
        site: (heap, requested, CUDA_ERROR_NOT_SUPPORTED)
        for site, (heap, _, requested) in truth.RUNTIME_SITES.items()
    }


def test_standin_runtime_asks_as_nvidia_runtime_does(runtime, plain_runs):
    """The stand-in runtime's start (tests/standins/libcudart.c) is a part of the
    real one's, in the same order, from 12.4 on (12.1 and 11.8 lack the first probe)."""
    version, _ = runtime
    if version in ("11.8", "12.1"):
        pytest.skip("the stand-in runtime follows 12.4 and later")
    nvidia = [r[1:] for r in lookups(plain_runs[1])]
    position = 0
    for request in truth.STANDIN_RUNTIME_REQUESTS:  # ValueError: not asked, or out of order
        position = nvidia.index(request, position) + 1


def test_runtime_table_holds_the_wrappers(exe, standin_dir, runtime, plain_runs, tmp_path):
    version, lib = runtime
    wanted = wrapped(version)
    # Without the sampler the table points into the driver, at these functions too.
    assert table(plain_runs[0].stdout) == {"libcuda.so.1": wanted | other_functions(version)}
    proc, _ = run_device(exe, [str(lib)], tmp_path / "t_", standin_env(standin_dir))
    assert proc.returncode == 0, proc.stderr
    assert table(proc.stdout) == {"libcuda.so.1": other_functions(version), "libmemprof.so": wanted}


def test_every_runtime_and_driver_allocation_is_recorded(
    exe, standin_dir, runtime, plain_runs, tmp_path
):
    _, lib = runtime
    proc, heaps = run_device(exe, [str(lib)], tmp_path / "r_", standin_env(standin_dir))
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain_runs[0].stdout)
    assert runtime_calls(proc.stdout) == runtime_calls(plain_runs[0].stdout)
    assert_runtime_failures(heaps, exe, runtime_calls(proc.stdout))
    # The runtime's error says it could not start, not that the device is full.
    assert "out of device memory" not in proc.stderr
    assert not list(tmp_path.glob("r_oom_*"))
    assert_sites(heaps, exe, truth.SITES["device_cuda_api"])


def test_nvidia_runtime_under_mem_parser(exe, standin_dir, tmp_path):
    """The report a user reads names the runtime calls that failed."""
    lib = runtime_library(VERSIONS[-1])
    proc, heaps = run_device(exe, [str(lib)], tmp_path / "m_", standin_env(standin_dir))
    assert proc.returncode == 0, proc.stderr
    section = failures_listed(exe, heaps, "cuda_host", 2)
    assert [line.split(maxsplit=2)[:2] + [line.split("  ")[-2]] for line in section] == [
        ["0.5", "MB", "error 801 (not supported)"],
        ["0.2", "MB", "error 801 (not supported)"],
    ]
    assert " rt_malloc_host < runtime_sites < main" in section[0]
    assert " rt_host_alloc < runtime_sites < main" in section[1]


def test_runtime_registrations_and_ipc_opens_pass_through_the_hooks(standin_dir, runtime, tmp_path):
    """cudaHostRegister, cudaHostUnregister, cudaIpcOpenMemHandle and
    cudaIpcCloseMemHandle are the sampler's wrappers and fail as without it (the runtime
    did not start); the driver's registrations and opens are noted, nothing else."""
    _, lib = runtime
    exe = build_device_fixture("device_foreign", standin_dir)
    env = standin_env(standin_dir)
    plain = subprocess.run([exe, str(lib)], env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    proc, heaps = run_device(exe, [str(lib)], tmp_path / "f_", env)
    assert proc.returncode == 0, proc.stderr
    assert checksum(proc.stdout) == checksum(plain.stdout)
    assert re.search(r"^start error=801$", proc.stdout, re.M)
    calls = foreign_calls(proc.stdout)
    assert {site: via for site, (via, _, _) in foreign_calls(plain.stdout).items()} == called_as(
        lib.name, "libcuda.so.1"
    )
    assert {site: via for site, (via, _, _) in calls.items()} == called_as(
        "libmemprof.so", "libmemprof.so"
    )
    assert {site: error for site, (_, _, error) in calls.items()} == {
        site: CUDA_ERROR_NOT_SUPPORTED if site.startswith("rt_") else 0
        for site in truth.FOREIGN_SITES
    }
    assert_foreign(
        heaps,
        exe,
        calls,
        [site for site, rec in truth.FOREIGN_SITES.items() if rec[4] and site.startswith("drv_")],
    )
    assert_sites(heaps, exe, truth.SITES["device_foreign"])
