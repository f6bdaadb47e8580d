"""The sampler end to end: fixture programs with known allocation sites run under
`mem_profiler run` (a real LD_PRELOAD), their .heap files read by the real parser."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
from pathlib import Path

import pytest
from support.interpreters import PYENV_SHIM
from support.jeprof import jeprof_text, to_jeprof
from support.paths import LIBMEMPROF, MEM_PARSER, MEM_PROFILER, ROOT
from support.profiling import one_heap, profile_run, report, total
from support.sampling_math import assert_estimate, relative_sd

from mem_profiler.control import defaults
from mem_profiler.core.file_names import heap_file_pattern
from mem_profiler.core.profile import Drops
from mem_profiler.core.units import format_amount
from mem_profiler.parser.read.heap_file import read_heap

KiB, MiB = 1024, 1024 * 1024


# --- estimates at -c 1024 ---------------------------------------------------------

N_PAGES, N_SMALL, N_TRANSIENT = 16384, 65536, 256  # 64 MiB, 16 MiB, 256 MiB


@pytest.fixture(scope="module")
def sites_1024(build_fixture, tmp_path_factory):
    exe = build_fixture("sites")
    out = tmp_path_factory.mktemp("sites1024")
    proc, files = profile_run([exe, N_PAGES, N_SMALL, N_TRANSIENT], out / "s_", 1024)
    return exe, one_heap(proc, files)


def test_inuse_per_site_within_sampling_tolerance(sites_1024):
    exe, heap = sites_1024
    rows = report(heap, exe, "inuse_space")
    # Each site also keeps its calloc'd array of pointers (8 B per block, one allocation).
    truth = {"site_pages": N_PAGES * 4096 + N_PAGES * 8, "site_small": N_SMALL * 256 + N_SMALL * 8}
    sd = {
        "site_pages": relative_sd(N_PAGES, 4096, 1024),
        "site_small": relative_sd(N_SMALL, 256, 1024),
    }
    for site, bytes_ in truth.items():
        assert_estimate(rows[site][1], bytes_, sd[site], 0.05)
    assert rows.get("site_transient", (0, 0))[1] <= 0.001 * sum(truth.values())

    combined_sd = math.sqrt(sum((sd[s] * truth[s]) ** 2 for s in truth)) / sum(truth.values())
    assert_estimate(total(heap, exe), sum(truth.values()), combined_sd, 0.02)


def test_alloc_space_of_freed_site(sites_1024):
    exe, heap = sites_1024
    rows = report(heap, exe, "alloc_space")
    assert_estimate(
        rows["site_transient"][1], N_TRANSIENT * MiB, relative_sd(N_TRANSIENT, MiB, 1024), 0.05
    )


@pytest.mark.parametrize("index", ["inuse_space", "alloc_space"])
def test_jeprof_reads_our_converted_file_and_agrees(sites_1024, index, tmp_path):
    exe, heap = sites_1024
    text = to_jeprof(heap, tmp_path / "sites.heap_v2")  # jeprof reads heap_v2 only
    jeprof_total, jeprof_rows = jeprof_text(exe, text, index)
    jeprof_names = [name for name, _, _ in jeprof_rows]
    rows = report(text, exe, index)
    ours = [name for name, _ in sorted(rows.items(), key=lambda kv: -kv[1][0])]
    sites = {"site_pages", "site_small", "site_transient"}
    # The same sites in the same order (libc's printf buffer is the only other thing).
    assert [n for n in jeprof_names if n in sites] == [n for n in ours if n in sites]
    if index == "alloc_space":
        assert jeprof_names[:3] == ours[:3] == ["site_transient", "site_pages", "site_small"]
    assert jeprof_total == pytest.approx(total(text, exe, index) / MiB, rel=0.01)


def test_objects_of_a_stack_of_mixed_sizes_are_unbiased(build_fixture, tmp_path):
    """One stack keeps 800,000 blocks of 32 B and 2,000 of 8 KiB: scaled by the stack's
    average size (jeprof's way) its objects come out about 57,000; the sums of the
    samples' weights give the 802,000 there are, and the bytes."""
    exe = build_fixture("mixed_sizes")
    small, large = 800_000, 2_000
    proc, files = profile_run([exe, small, large], tmp_path / "m_", 1024)
    heap = one_heap(proc, files)
    objects = report(heap, exe, "inuse_objects")["mixed_site"][1]
    space = report(heap, exe, "inuse_space")["mixed_site"][1]
    sd_small, sd_large = relative_sd(small, 32, 1024), relative_sd(large, 8192, 1024)
    assert_estimate(
        objects,
        small + large,
        math.hypot(small * sd_small, large * sd_large) / (small + large),
        0.05,
    )
    truth = small * 32 + large * 8192
    assert_estimate(
        space, truth, math.hypot(small * 32 * sd_small, large * 8192 * sd_large) / truth, 0.03
    )
    assert read_heap(heap).drops == Drops(0, 0, 0, 0)


def test_dropped_samples_are_reported_with_what_they_stood_for(
    build_fixture, tmp_path, clean_env, monkeypatch
):
    """A live table too small for the window: every report says how many samples were
    dropped, why, and what they stood for; the allocated figures keep them."""
    exe = build_fixture("mixed_sizes")
    monkeypatch.setenv("MEMPROF_MAX_LIVE", "1000")
    proc, files = profile_run([exe, 20_000, 0], tmp_path / "d_", 1)
    heap = one_heap(proc, files)
    drops = read_heap(heap).drops
    assert drops is not None
    assert drops.stack_table == drops.memory == 0 and drops.live_table > 10_000
    # blocks of 32 B, and maybe libc's stdout buffer (the array of pointers came first)
    missing = 20_000 - report(heap, exe, "inuse_objects")["mixed_site"][1]
    assert drops.live_table - missing in (0.0, 1.0)
    assert drops.bytes - 32 * missing in (0.0, 1024.0, 4096.0)
    assert report(heap, exe, "alloc_objects")["mixed_site"][1] == 20_000
    note = (
        f"Dropped {drops.live_table:,} samples standing for about "
        f"{format_amount(drops.bytes, 'bytes')} allocated: {drops.live_table:,} because "
        "the live table was full (raise MEMPROF_MAX_LIVE): counted as allocated, missing "
        "from the in-use figures."
    )
    parser = [MEM_PARSER, "-p", str(exe), "-f", str(heap)]
    text = subprocess.run([*parser, "-t"], capture_output=True, text=True, check=True).stdout
    assert text.splitlines()[1] == note
    document = json.loads(
        subprocess.run([*parser, "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert document["dropped"]["live_table"] == drops.live_table
    assert document["dropped"]["note"] == note
    subprocess.run(
        [
            *parser,
            "-s",
            "-o",
            str(tmp_path / "g.svg"),
            "--flame",
            str(tmp_path / "f.html"),
            "--pprof",
            str(tmp_path / "p.pb.gz"),
        ],
        check=True,
    )
    svg = (tmp_path / "g.svg").read_text()
    assert f"Dropped {drops.live_table:,} samples" in svg
    assert json.dumps(note)[1:-1] in (tmp_path / "f.html").read_text()
    pprof = subprocess.run(
        ["go", "tool", "pprof", "-raw", str(tmp_path / "p.pb.gz")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert note in pprof


# --- exact mode ---------------------------------------------------------------------


def test_exact_mode_counts_every_byte(build_fixture, tmp_path):
    exe = build_fixture("sites")
    n_pages, n_small, n_transient = 1000, 3000, 20
    proc, files = profile_run([exe, n_pages, n_small, n_transient], tmp_path / "x_", 1)
    heap = one_heap(proc, files)
    space, objects = report(heap, exe, "inuse_space"), report(heap, exe, "inuse_objects")
    assert space["site_pages"][1] == n_pages * 4096 + n_pages * 8
    assert objects["site_pages"][1] == n_pages + 1
    assert space["site_small"][1] == n_small * 256 + n_small * 8
    assert objects["site_small"][1] == n_small + 1
    assert "site_transient" not in space
    alloc = report(heap, exe, "alloc_space")
    assert alloc["site_transient"][1] == n_transient * MiB
    assert report(heap, exe, "alloc_objects")["site_transient"][1] == n_transient


# function: (bytes of each live block, live blocks per call, allocations per call)
ENTRY_POINTS = {
    "via_malloc": (1000, 1, 1),
    "via_calloc": (1100, 1, 1),
    "via_realloc": (300, 1, 2),
    "via_posix_memalign": (1300, 1, 1),
    "via_aligned_alloc": (1408, 1, 1),
    "via_memalign": (1500, 1, 1),
    "via_valloc": (1600, 1, 1),
    "via_pvalloc": (1700, 1, 1),
    "via_strdup": (31, 1, 1),
    "via_reallocarray": (1800, 1, 1),
}


def test_every_hooked_entry_point_counted_once(build_fixture, tmp_path):
    exe = build_fixture("entry_points")
    n = 100
    heap = one_heap(*profile_run([exe, n], tmp_path / "e_", 1))
    inuse, inuse_objs = report(heap, exe), report(heap, exe, "inuse_objects")
    alloc_space, alloc_objs = report(heap, exe, "alloc_space"), report(heap, exe, "alloc_objects")
    for fn, (size, live, allocs) in ENTRY_POINTS.items():
        assert inuse[fn][1] == n * size * live, fn
        assert inuse_objs[fn][1] == n * live, fn
        assert alloc_objs[fn][1] == n * allocs, fn
    assert alloc_space["via_realloc"][1] == n * (100 + 300)
    assert "via_free" not in inuse
    assert alloc_space["via_free"][1] == sum(5000 + i for i in range(n))


def test_cxx_new_and_delete_reach_the_sampler(build_fixture, tmp_path):
    exe = build_fixture("cxx_new")
    n = 500
    heap = one_heap(*profile_run([exe, n], tmp_path / "c_", 1))
    inuse = report(heap, exe)
    # `new` and the vector's reserve both end in operator new -> malloc.
    assert inuse["make_widgets"][1] == n * 48 + n * 8
    assert inuse["make_buffers"][1] == n * 700 + n * 8
    assert inuse["make_buffers"][0] == n * 700  # leaf after operator new[] is stripped
    assert "churn_strings" not in inuse
    assert report(heap, exe, "alloc_space")["churn_strings"][1] == n * 900
    assert not any(name.startswith("operator new") for name in inuse)


# --- threads ---------------------------------------------------------------------------


def test_eight_threads_exact(build_fixture, tmp_path):
    exe = build_fixture("threads")
    threads, blocks, size = 8, 5000, 96
    heap = one_heap(*profile_run([exe, threads, blocks, size], tmp_path / "t_", 1))
    assert report(heap, exe)["thread_worker"][1] == threads * blocks * size
    alloc = report(heap, exe, "alloc_space")
    assert alloc["thread_scratch"][1] == threads * blocks * size
    assert alloc["thread_worker"][1] == threads * blocks * size * 2  # its own + scratch's


def test_eight_threads_sampled(build_fixture, tmp_path):
    exe = build_fixture("threads")
    threads, blocks, size = 8, 20000, 512
    heap = one_heap(*profile_run([exe, threads, blocks, size], tmp_path / "t_", 1024))
    n = threads * blocks
    assert_estimate(
        report(heap, exe)["thread_worker"][1], n * size, relative_sd(n, size, 1024), 0.05
    )


# --- process life cycle ------------------------------------------------------------------


def test_fork_dlopen_and_exit_from_a_thread(build_fixture, tmp_path):
    exe = build_fixture("lifecycle")
    plugin = build_fixture("plugin", shared=True)
    proc, files = profile_run([exe, plugin], tmp_path / "l_", 1, "--follow-fork", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(files) == 2, proc.stderr
    by_pid = {int(f.name.split("_")[1].split(".")[0]): f for f in files}
    assert read_heap(by_pid[max(by_pid)]).meta["forked_from"] == str(min(by_pid))
    assert "forked_from" not in read_heap(by_pid[min(by_pid)]).meta
    assert (
        f"process {max(by_pid)}, children of {exe} (process {min(by_pid)}), wrote files "
        "of their own"
    ) in proc.stderr
    child = report(by_pid[max(by_pid)], exe)
    parent = report(by_pid[min(by_pid)], exe)
    assert parent["parent_work"][1] == 100 * 2000
    assert parent["plugin_alloc"][1] == 50 * 5000
    assert parent["destructor_work"][1] == 4 * 8000
    # exit() runs the destructors on the exiting thread's stack.
    assert parent["exiting_thread"][1] == 10 * 7000 + 4 * 8000
    assert "child_work" not in parent
    assert child["child_work"][1] == 300 * 3000
    assert child["destructor_work"][1] == 4 * 8000
    assert "parent_work" not in child


def test_a_forked_child_is_profiled_only_on_request(build_fixture, tmp_path):
    exe = build_fixture("lifecycle")
    plugin = build_fixture("plugin", shared=True)
    proc, files = profile_run([exe, plugin], tmp_path / "l_", 1, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (parent,) = files  # the child's window ended unwritten
    assert "child_work" not in report(parent, exe)
    assert report(parent, exe)["parent_work"][1] == 100 * 2000
    assert "children of" not in proc.stderr


def test_a_wrapper_script_is_followed_through_exec_not_into_its_subshells(build_fixture, tmp_path):
    exe = build_fixture("sites")
    # As a pyenv shim does: subshells and programs run for their output, then exec.
    shim = tmp_path / "shim"
    shim.write_text(
        '#!/bin/bash\nroot=$(dirname "$0"); n=$(echo 10 | cat)\n'
        "for i in 1 2 3; do ( true ) ; done\n"
        f'exec {exe} "$n" "$@"\n'
    )
    shim.chmod(0o755)
    proc, files = profile_run([shim, "10", "1"], tmp_path / "s_", 1)
    assert proc.returncode == 0, proc.stderr
    (heap,) = files
    assert read_heap(heap).exe == str(exe)
    assert report(heap, exe)["site_pages"][1] == 10 * 4096 + 80


@pytest.mark.skipif(not PYENV_SHIM.is_file(), reason="no pyenv shim on this machine")
def test_the_pyenv_shim_profiles_the_interpreter_it_execs(tmp_path):
    proc, files = profile_run([PYENV_SHIM, "-c", "kept = bytearray(3 << 20)"], tmp_path / "p_", 1)
    assert proc.returncode == 0, proc.stderr
    (heap,) = files  # not one per subshell of the shim
    program = read_heap(heap).exe
    assert program is not None
    assert Path(program).name.startswith("python3.")
    assert int(read_heap(heap).acc_bytes.max()) == (3 << 20) + 1  # the bytearray, at rate 1


def test_plain_ld_preload_with_environment(build_fixture, tmp_path, clean_env):
    exe = build_fixture("sites")
    env = {
        "LD_PRELOAD": str(LIBMEMPROF),
        "MEMPROF_CAPTURE": "1",
        "MEMPROF_RATE": "1",
        "MEMPROF_PREFIX": str(tmp_path / "env_"),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run([exe, "10", "10", "1"], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0
    (heap,) = tmp_path.glob(f"env_{'[0-9]' * 1}*.heap")
    assert report(heap, exe)["site_pages"][1] == 10 * 4096 + 80
    assert heap.name.endswith(".0001.heap")


def test_the_samplers_own_defaults_are_the_python_ones(tmp_path):
    """A program started with the sampler and no settings captures as mem_profiler's
    defaults say (mem_profiler.control.defaults mirrors sampler/base/defaults.h); a depth
    beyond the largest falls back to the default."""
    env = {"LD_PRELOAD": str(LIBMEMPROF), "MEMPROF_CAPTURE": "1", "PATH": "/usr/bin:/bin"}
    for depth, expected in (
        (None, defaults.DEPTH),
        (defaults.MAX_DEPTH, defaults.MAX_DEPTH),
        (defaults.MAX_DEPTH + 1, defaults.DEPTH),
    ):
        folder = tmp_path / f"depth_{depth}"
        folder.mkdir()
        depth_env = {} if depth is None else {"MEMPROF_DEPTH": str(depth)}
        proc = subprocess.run(["true"], env=env | depth_env, cwd=folder, timeout=60)
        assert proc.returncode == 0
        (heap,) = folder.iterdir()
        assert heap_file_pattern(defaults.PREFIX).match(heap.name), heap.name
        profile = read_heap(heap)
        assert (profile.rate, int(profile.meta["max_depth"])) == (defaults.RATE, expected)


def test_each_default_of_the_sampler_is_the_python_one(tmp_path):
    """Every #define of sampler/base/defaults.h, as the C compiler reads it, is the value of
    mem_profiler.control.defaults under its name less MEMPROF_ and DEFAULT_, and every default
    there is one of them."""
    header = (ROOT / "sampler" / "base" / "defaults.h").read_text()
    names = re.findall(r"^#define (MEMPROF_\w+) ", header, re.MULTILINE)
    python_name = {name: re.sub(r"^MEMPROF_(DEFAULT_)?", "", name) for name in names}
    assert set(python_name.values()) == {name for name in vars(defaults) if name.isupper()}
    program = tmp_path / "defaults.c"
    program.write_text(
        '#include <stdio.h>\n#include "base/defaults.h"\n'
        'static void text(const char *v) { printf("%s\\n", v); }\n'
        'static void number(unsigned long long v) { printf("%llu\\n", v); }\n'
        "int main(void) {\n"
        + "".join(f"_Generic(({n}), char *: text, default: number)({n});\n" for n in names)
        + "}\n"
    )
    exe = tmp_path / "defaults"
    subprocess.run(["gcc", "-I", str(ROOT / "sampler"), "-o", str(exe), str(program)], check=True)
    c_values = subprocess.check_output([exe], text=True).splitlines()
    assert dict(zip(names, c_values, strict=True)) == {
        name: str(getattr(defaults, python_name[name])) for name in names
    }


def test_exit_status_passes_through_and_children_are_not_followed(build_fixture, tmp_path):
    exe = build_fixture("sites")
    script = f"{exe} 10 10 1 >/dev/null; exit 7"
    proc, files = profile_run(["/bin/bash", "-c", script], tmp_path / "n_", 1)
    assert proc.returncode == 7
    assert len(files) == 1  # bash only: the program it ran loaded the sampler idle
    proc, files = profile_run(["/bin/bash", "-c", script], tmp_path / "f_", 1, "--follow-children")
    assert proc.returncode == 7
    assert len(files) == 2
    (followed,) = [f for f in files if read_heap(f).exe == str(exe)]
    assert report(followed, exe)["site_pages"][1] == 10 * 4096 + 80


def test_killed_target_leaves_no_heap_file(build_fixture, tmp_path):
    proc, files = profile_run(["/bin/sh", "-c", "kill -KILL $$"], tmp_path / "k_", 1)
    assert proc.returncode == 128 + signal.SIGKILL
    assert files == []
    assert list(tmp_path.iterdir()) == []
    assert "wrote no profile" in proc.stderr


def test_hundreds_of_threads_and_cross_thread_frees(build_fixture, tmp_path):
    exe = build_fixture("thread_storm")
    waves = 8  # 400 threads, 50 at a time
    proc, files = profile_run([exe, waves], tmp_path / "w_", 1, timeout=60)
    heap = one_heap(proc, files)
    inuse, alloc = report(heap, exe), report(heap, exe, "alloc_space")
    threads = waves * 50
    assert inuse["storm_keep"][1] == threads * (100 * 200 + 100 * 8)
    assert "storm_handoff" not in inuse  # every hand-off freed, most by other threads
    assert alloc["storm_handoff"][1] == threads * (50 * 300 + 50 * 8)


def test_unwritable_output_costs_the_program_nothing(build_fixture, tmp_path, clean_env):
    exe = build_fixture("sites")
    env = {
        "LD_PRELOAD": str(LIBMEMPROF),
        "MEMPROF_CAPTURE": "1",
        "MEMPROF_PREFIX": str(tmp_path / "missing" / "p_"),
    }
    proc = subprocess.run(
        [exe, "10", "10", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip().isdigit()
    assert proc.stderr.startswith("mem_profiler: could not write ")
    assert len(proc.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_run_leak_check_passes_what_the_program_still_points_to(tmp_path):
    """examples/leaky keeps its config blocks and its cache in static arrays to its end:
    live at exit, but reachable, which a leak check (LeakSanitizer's) passes, saying how
    much it was; a threshold below nothing still passes."""
    exe = ROOT / "build" / "examples" / "leaky"
    # load_config, cache_insert and stdout's buffer, each pointed to by the program's data
    reachable = 20 * 64 * 1024 + 20 * 16 * 1024 + 4096
    proc = subprocess.run(
        [MEM_PROFILER, "run", "-c", "1", "--leak-check", "-o", str(tmp_path / "l_"), "--"]
        + [str(exe), "20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok   host max-live-at-exit 0 B <= limit 0 B, exact" in proc.stderr
    assert f"note: {reachable:,} B " in proc.stderr, proc.stderr
    assert (tmp_path / "l_leak-check.heap").is_file()
