"""A framework's caching allocator seen through PyTorch's USDT probes: the stand-in
libc10_cuda.so (tests/standins/c10_cuda.c) fires pytorch:malloc and pytorch:free behind
their semaphores, as torch's library does; tests/fixtures/device_pool.c takes blocks
from it at four sites and prints their figures.  At `-c 1 --device-rate 1` the cuda heap
holds the blocks, every figure of every site exact, and cuda_segments the segments the
pool took from CUDA, exactly what it holds at the end; launched, and in a window opened
with --attach on the fixture started without the sampler, after which it runs on with
its code and semaphores as they were.  At a --device-rate that samples them, the figures
of many blocks within the sampling math."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from standins import truth
from standins.build import build_device_fixture, standin_env
from support.device import (
    INDEXES,
    assert_blocks_exact,
    assert_sites_estimated,
    by_heap,
    live_at_failure,
    pool_of,
    site_lines,
)
from support.paths import MEM_PROFILER
from support.profiling import profile_run, report, run_parser, total
from support.targets import attach_window

from mem_profiler.core.units import MB

MiB = 1 << 20


@pytest.fixture(scope="module")
def pool(standin_dir):
    exe = build_device_fixture("device_pool", standin_dir)
    plain = subprocess.run(
        [exe, "run"], env=standin_env(standin_dir), capture_output=True, text=True, check=True
    )
    return exe, plain.stdout


@pytest.mark.parametrize("mode", ["run", "blocked"])
def test_pool_blocks_exact_under_run(pool, standin_dir, tmp_path, mode):
    # blocked: the pool runs in a thread that blocked every signal, SIGTRAP left open
    exe, plain = pool
    proc, files = profile_run(
        [exe, mode], tmp_path / "p_", 1, "--device-rate", "1", env=standin_env(standin_dir)
    )
    assert proc.returncode == 0, proc.stderr
    heaps = by_heap(files)
    assert_blocks_exact(heaps, exe, proc.stdout)
    assert pool_of(plain)[2] == 0 and pool_of(proc.stdout)[2] > 0  # armed in the window only
    assert pool_of(proc.stdout)[3] == pool_of(plain)[3]  # the same results

    text = run_parser("-p", exe, "-f", str(heaps["host"])[: -len(".heap")], "-t").stdout
    reserved, allocated, _, _ = pool_of(proc.stdout)
    assert (
        f"cuda: {allocated / MB:.1f} MB allocated in blocks, {reserved / MB:.1f} MB reserved "
        f"in segments, {(reserved - allocated) / MB:.1f} MB cached or fragmented"
    ) in text


def test_pool_blocks_estimated_at_a_sampling_rate(standin_dir, tmp_path):
    """At a --device-rate of 64 KiB a block is sampled with p = 1 - exp(-size/rate):
    each site's figures within the sampling math of the fixture's own; the churned
    site's sampled blocks all taken out again as the pool was given them back."""
    exe = build_device_fixture("device_pool", standin_dir)
    rate = 64 * 1024
    proc, files = profile_run(
        [exe, "many"], tmp_path / "m_", 1024, "--device-rate", str(rate),
        env=standin_env(standin_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sites = site_lines(proc.stdout)
    assert set(sites) == {"pool_many_kept", "pool_many_churned"}
    cuda = by_heap(files)["cuda"]
    assert_sites_estimated(
        sites, rate, lambda index: {n: c for n, (_, c) in report(cuda, exe, index).items()}
    )


def test_a_pool_without_probes_is_said_in_its_capture(pool, standin_dir, tmp_path):
    """The pool of a PyTorch before 2.1 has no probes: the cuda heap holds its segments,
    exactly what it reserved, and the capture's file says so, so that mem_parser says it
    to a user who did not see the program's stderr (a process captured with -p)."""
    exe, _ = pool
    env = standin_env(standin_dir, STANDIN_C10="libc10_cuda.so.2.0")
    proc, files = profile_run([exe, "run"], tmp_path / "n_", 1, "--device-rate", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    heaps = by_heap(files)
    assert set(heaps) == {"host", "cuda"}
    reserved, _, semaphores, _ = pool_of(proc.stdout)
    assert semaphores == 0
    assert total(heaps["cuda"], exe, "inuse_space") == reserved
    said = (
        "has no pytorch:malloc probe (PyTorch before 2.1, and its aarch64 builds to 2.14 at"
        " least): the cuda heap holds its segments,"
        " not its tensors"
    )
    for argv in (["-f", heaps["cuda"]], ["-f", str(heaps["host"])[: -len(".heap")]]):
        lines = run_parser("-p", exe, *argv, "-t").stdout.splitlines()
        assert lines[1].startswith("Note: ") and lines[1].endswith(f"libc10_cuda.so.2.0 {said}.")


def test_the_gate_bounds_a_category_of_the_pools_tensors(pool, standin_dir, tmp_path):
    """gate --max-category cuda:CATEGORY=SIZE over the pool's tensors (replayed from the
    log), by rules of the user's own (--category-rules): each category's peak exact at
    --device-rate 1, the fixture's own figures; by PyTorch's rules, which know nothing
    of the fixture's functions, none of them is weights."""
    exe, plain = pool
    sites = site_lines(plain)
    weights, grads = sites["pool_weights"]["live_bytes"], sites["pool_grads"]["live_bytes"]
    rules = tmp_path / "rules"
    rules.write_text("weights <native> pool_weights\ngradients <native> pool_grads\n")

    def gate(*options: str | Path) -> tuple[int, dict[str, dict]]:
        out = tmp_path / "gate.json"
        proc = subprocess.run(
            [MEM_PROFILER, "gate", "--device-rate", "1", *map(str, options), "--max-category",
             f"cuda:weights={weights - 1}", "--max-category", f"cuda:gradients={grads}",
             "--json", str(out), "--", str(exe), "run"],
            env=standin_env(standin_dir), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        results = json.loads(out.read_text())["commands"][0]["results"]
        return proc.returncode, {r["budget"]["category"]: r for r in results}

    code, results = gate("--category-rules", rules)
    assert code == 1
    assert results["weights"]["measured"] == weights and results["weights"]["exceeded"]
    assert results["gradients"]["measured"] == grads and not results["gradients"]["exceeded"]
    code, results = gate()
    assert code == 0 and results["weights"]["measured"] == 0


def test_a_gates_saved_profiles_keep_their_event_log(pool, standin_dir, tmp_path):
    """gate --save-profiles of a command judged in log mode (a category budget) keeps its
    event log as NAME.K.memlog beside NAME.cuda.heap, where the parser finds it, and no log
    file of an earlier save of NAME: the peak replayed from the saved files is the
    fixture's own to the byte."""
    exe, plain = pool
    sites = site_lines(plain)
    peak = sum(sites[s]["live_bytes"] for s in ("pool_weights", "pool_grads"))
    peak += sites["pool_scratch"]["alloc_bytes"]
    saved = tmp_path / "saved"
    saved.mkdir()
    stale = saved / f"{exe.name}.2.memlog"  # a longer log's, which would be read as newest
    stale.write_bytes(b"MEMPROF")
    proc = subprocess.run(
        [MEM_PROFILER, "gate", "--device-rate", "1", "--max-category", "cuda:other=1GiB",
         "--save-profiles", saved, "--", exe, "steps"],
        env=standin_env(standin_dir), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and (saved / f"{exe.name}.1.memlog").is_file()
    cuda = saved / f"{exe.name}.cuda.heap"
    assert json.loads(run_parser("-p", exe, "-f", cuda, "--peak", "--json").stdout)["total"] == peak


def logged_tensors(
    exe: Path, mode: str, standin_dir: Path, folder: Path, capture: str = "log"
) -> tuple[subprocess.CompletedProcess, Path]:
    """device_pool MODE captured in `capture` mode (log, table), every block recorded:
    the run and its cuda heap."""
    proc, files = profile_run(
        [exe, mode], folder / "l_", 1, "--device-rate", "1", "--mode", capture,
        env=standin_env(standin_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc, by_heap(files)["cuda"]


def test_the_pools_tensors_over_time(pool, standin_dir, tmp_path):
    """--mode log on the pool's tensors: the cuda heap's peak (--peak), replayed from the
    events, is the fixture's own to the byte (its weights and grads kept, its four
    scratch blocks live at once), and the timeline draws it; step compare gives the
    block the second step kept beyond the first, by its stack."""
    exe, plain = pool
    sites = site_lines(plain)
    peak = sum(sites[s]["live_bytes"] for s in ("pool_weights", "pool_grads"))
    peak += sites["pool_scratch"]["alloc_bytes"]
    proc, cuda = logged_tensors(exe, "steps", standin_dir, tmp_path)
    at_peak = json.loads(run_parser("-p", exe, "-f", cuda, "--peak", "--json").stdout)
    assert at_peak["total"] == peak
    svg = tmp_path / "timeline.svg"
    run_parser("-p", exe, "-f", cuda, "--timeline", svg)
    assert f"peak {peak / MB:.1f} MB (cuda)" in svg.read_text()
    compared = run_parser("-p", exe, "-f", cuda, "--compare-steps", "2", "1", "--json").stdout
    kept = site_lines(proc.stdout)["pool_leak"]["live_bytes"]
    assert json.loads(compared)["total"] == kept
    assert {r["name"]: r["cum"] for r in json.loads(compared)["rows"]}["pool_leak"] == kept


# Run with the tests' interpreter, which has torch (the CPU build: _memory_viz runs
# without a GPU): what torch's own reader makes of a snapshot, as JSON.
READ_SNAPSHOT = """
import json, pickle, sys
from torch.cuda import _memory_viz as viz
data = pickle.load(open(sys.argv[1], "rb"))
lines = viz.memory(data, format_flamegraph=lambda text: text)
print(json.dumps({
    "segsum": viz.segsum(data),
    "trace": viz.trace(data),
    "memory": lines,
    "reserved": sum(s["total_size"] for s in data["segments"]),
    "allocated": sum(viz.calc_active(s) for s in data["segments"]),
    "requested": sum(s["requested_size"] for s in data["segments"]),
    "blocks": sum(b["state"] == "active_allocated" for s in data["segments"] for b in s["blocks"]),
    "mem_profiler": data["mem_profiler"],
}))
"""


def assert_torch_snapshot_is_the_pools(
    exe: Path, heap: Path, stdout: str, tmp: Path, traced: bool = True
) -> None:
    """--torch-snapshot of a capture of the pool (`stdout`, what it printed), read by
    torch's own _memory_viz: segsum (`stats`) accepts it (each segment's blocks tile it),
    the reserved bytes and the bytes asked for are the pool's own figures, memory's lines
    give each site the bytes the fixture keeps there, and trace replays every allocation
    and free where the capture logged them (`traced`), none where it did not."""
    snapshot = tmp / "snapshot.pickle"
    assert run_parser("-p", exe, "-f", heap, "--torch-snapshot", snapshot).stdout == ""
    read = subprocess.run(
        [sys.executable, "-c", READ_SNAPSHOT, snapshot],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    seen = json.loads(read.stdout)
    # the stand-in counts the bytes asked for, torch's segsum the blocks', each rounded
    # up to 512 bytes
    reserved, requested, _, _ = pool_of(stdout)
    assert (seen["reserved"], seen["requested"]) == (reserved, requested)
    assert requested <= seen["allocated"] < requested + 512 * seen["blocks"]
    assert "total_reserved" in seen["segsum"]
    assert seen["mem_profiler"]["tensors_outside_segments"] == 0
    sites = site_lines(stdout)
    by_site: dict[str, int] = {}
    for line in seen["memory"].splitlines():  # stream;state;file:line:function;... bytes
        stack, size = line.rsplit(" ", 1)
        functions = {frame.rsplit(":", 1)[-1] for frame in stack.split(";")}
        if ";active_allocated;" in stack and not stack.endswith("<gaps>"):  # gaps: rounding
            (site,) = functions & set(sites)
            by_site[site] = by_site.get(site, 0) + int(size)
    assert by_site == {name: f["live_bytes"] for name, f in sites.items() if f["live_bytes"]}
    # trace: `b = a[offset:size]` per allocation of a tensor, `del b # size` per free
    made = re.findall(r"^\w+ = \w+\[", seen["trace"], re.M)
    freed = re.findall(r"^del \w+ #", seen["trace"], re.M)
    if not traced:
        assert made == freed == []
        return
    assert len(made) == sum(f["allocs"] for f in sites.values())
    assert len(made) - len(freed) == sum(f["live"] for f in sites.values())


@pytest.mark.parametrize("capture", ["log", "table"])
def test_the_torch_snapshot_of_a_launch_reads_in_torchs_memory_viz(
    pool, standin_dir, tmp_path, capture
):
    pytest.importorskip("torch")
    exe, _ = pool
    proc, cuda = logged_tensors(exe, "run", standin_dir, tmp_path, capture)
    assert_torch_snapshot_is_the_pools(exe, cuda, proc.stdout, tmp_path, capture == "log")


@pytest.mark.parametrize("capture", ["log", "table"])
def test_the_torch_snapshot_of_an_attached_window(pool, standin_dir, tmp_path, capture):
    """The same of a window opened with --attach in the pool started without the
    sampler, around one phase."""
    pytest.importorskip("torch")
    exe, _ = pool
    attached = Served(exe, standin_env(standin_dir))
    try:
        controller = attach_window(
            attached.pid, "-c", "1", "--device-rate", "1", "--mode", capture, "-o", tmp_path / "a_"
        )
        inside = attached.phase()
        controller.send_signal(2)  # Ctrl-C ends the window and detaches
        out, err = controller.communicate(timeout=120)
        assert controller.returncode == 0, err
        assert attached.quit() == 0
    finally:
        attached.kill()
    cuda = by_heap([Path(p) for p in re.findall(r"(\S+\.heap)\b", out + err)])["cuda"]
    assert_torch_snapshot_is_the_pools(exe, cuda, inside, tmp_path, capture == "log")


def test_inefficient_tensors_found_with_their_launch_counts(pool, standin_dir, tmp_path):
    """--inefficient on the pool's tensors (log mode): pool_early's block, allocated 10
    kernel launches before its first use and freed 10 after its last, is found early and
    late with those counts; the scratch blocks, each used by the launch after it was
    taken, are not; every launch's parameters were read."""
    exe, _ = pool
    _, cuda = logged_tensors(exe, "uses", standin_dir, tmp_path)
    report = json.loads(run_parser("-p", exe, "-f", cuda, "--inefficient", "--json").stdout)
    found = {(f["kind"], f["stack"][2], f["size"], f["launches"]) for f in report["findings"]}
    assert found == {
        ("early_allocation", "pool_early", 4 * MiB, 10),
        ("late_deallocation", "pool_early", 4 * MiB, 10),
    }
    assert (report["launches"], report["unknown_launches"]) == (21, 0)


def test_the_programs_own_sigtrap_handlers_stay_in_charge(pool, standin_dir, tmp_path):
    # one set before the sites were armed, one after: each gets the traps the program
    # raises, and the pool's blocks after the second are still tracked
    exe, _ = pool
    proc, files = profile_run(
        [exe, "handler"], tmp_path / "h_", 1, "--device-rate", "1", env=standin_env(standin_dir)
    )
    assert proc.returncode == 0, proc.stderr
    assert "traps first=2 second=1" in proc.stdout
    late = report(by_heap(files)["cuda"], exe, "inuse_space")["pool_late"]
    assert late[1] == site_lines(proc.stdout)["pool_late"]["live_bytes"] == 12345


def assert_kept_blocks_live(at_failure: dict[str, Path], exe: Path, stdout: str) -> None:
    """The weights and grads the program kept, each site's live bytes exact."""
    assert set(at_failure) == {"host", "cuda", "cuda_segments"}
    sites = site_lines(stdout)
    assert set(sites) == {"pool_weights", "pool_grads"}
    for name, figures in sites.items():
        assert report(at_failure["cuda"], exe)[name][1] == figures["live_bytes"], name


@pytest.mark.parametrize(
    "mode, second_line",
    [
        (
            "oom",
            "Taken as the framework raised c10::OutOfMemoryError, after an allocation of"
            " 1024.0 MB in the cuda_segments heap failed, out of memory (error 2): what"
            " was live then.",
        ),
        (
            "limit",
            "Taken as the framework raised c10::OutOfMemoryError at a limit of its own (such"
            " as torch.cuda.set_per_process_memory_fraction), no device allocation having"
            " failed: what was live then.",
        ),
    ],
)
def test_what_was_live_when_the_pool_ran_out_of_memory(
    pool, standin_dir, tmp_path, mode, second_line
):
    """The pool cannot take a block of 1 GiB (its cudaMalloc fails, again after it gave
    its cache back), or a block past the limit it was given (CUDA is never asked): as it
    throws its c10::OutOfMemoryError the window's files as they were then are written
    beside its own, without being asked for, the failure named in them; the program
    goes on as it would (it frees the grads, and exits 0)."""
    exe, _ = pool
    env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    proc, files = profile_run([exe, mode], tmp_path / "o_", 1, "--device-rate", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "oom: CUDA out of memory. Tried to allocate" in proc.stdout  # its own error
    at_failure = live_at_failure(proc.stderr)
    assert_kept_blocks_live(at_failure, exe, proc.stdout)
    assert "pool_grads" not in report(by_heap(files)["cuda"], exe)  # freed after it
    text = run_parser("-p", exe, "-f", at_failure["cuda_segments"], "-t").stdout
    assert text.splitlines()[1] == second_line
    # its cache held nothing to give back: one cudaMalloc, or none at its limit
    failed = "Failed allocations in the cuda_segments heap: 1\n"
    assert (failed in text) == (mode == "oom"), text
    both = run_parser("-p", exe, "-f", str(at_failure["host"])[: -len(".heap")], "-t").stdout
    assert both.splitlines()[1] == second_line  # the heaps side by side say it too


def test_a_failure_the_pool_retries_writes_nothing(pool, standin_dir, tmp_path):
    """The pool's cudaMalloc of 100 MiB fails while its cache holds 180 MiB of the
    device's 256; it gives the cache back and asks again, which succeeds: no error is
    raised, so nothing is written as at a failure, and the failure is still noted."""
    exe, _ = pool
    env = standin_env(standin_dir, STANDIN_DEVICE_MEMORY=str(truth.OOM_DEVICE_MEMORY))
    proc, files = profile_run([exe, "retry"], tmp_path / "r_", 1, "--device-rate", "1", env=env)
    assert proc.returncode == 0 and "retried\n" in proc.stdout, proc.stderr
    assert "out of device memory" not in proc.stderr
    assert not list(tmp_path.glob("r_oom_*"))
    text = run_parser("-p", exe, "-f", by_heap(files)["cuda_segments"], "-t").stdout
    assert "Failed allocations in the cuda_segments heap: 1\n" in text
    assert "100.0 MB  error 2 (out of memory)  new_segment < carve < allocate < c10_malloc" in text


class Served:
    """device_pool serve, started without the sampler."""

    def __init__(self, exe: Path, env: dict[str, str]) -> None:
        env = {k: v for k, v in env.items() if not k.startswith("MEMPROF_") and k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(
            [str(exe), "serve"], env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline().split()[1])

    def ask(self, command: str) -> str:
        """What the fixture printed for `command` ("phase", "limit"), up to its "done"."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        lines = []
        while (line := self.proc.stdout.readline()) not in ("done\n", ""):
            lines.append(line)
        return "".join(lines)

    def phase(self) -> str:
        return self.ask("phase")

    def quit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_pool_blocks_exact_in_an_attached_window(pool, standin_dir, tmp_path):
    exe, _ = pool
    env = standin_env(standin_dir)
    plain = Served(exe, env)
    attached = Served(exe, env)
    try:
        controller = attach_window(
            attached.pid, "-c", "1", "--device-rate", "1", "-o", tmp_path / "a_"
        )
        inside = attached.phase()
        controller.send_signal(2)  # Ctrl-C ends the window and detaches
        out, err = controller.communicate(timeout=120)
        assert controller.returncode == 0, err
        files = [Path(p) for p in re.findall(r"(\S+\.heap)\b", out + err)]
        assert_blocks_exact(by_heap(files), exe, inside)
        assert pool_of(inside)[2] > 0

        # detached: the sites and semaphores as they were, the same results as without it
        first, after = plain.phase(), attached.phase()
        assert pool_of(after)[2] == 0
        assert pool_of(after)[3] == pool_of(plain.phase())[3]
        assert pool_of(first)[3] == pool_of(inside)[3]
        assert attached.quit() == 0 and plain.quit() == 0
    finally:
        attached.kill()
        plain.kill()


def test_what_was_live_when_the_pool_ran_out_of_memory_in_an_attached_window(
    pool, standin_dir, tmp_path
):
    """--attach redirects the pool's throws too: its c10::OutOfMemoryError at its limit,
    in a window opened on the fixture started without the sampler, writes what was
    live then, the weights and grads its phase kept; the controller names the files."""
    exe, _ = pool
    attached = Served(exe, standin_env(standin_dir))
    try:
        controller = attach_window(
            attached.pid, "-c", "1", "--device-rate", "1", "-o", tmp_path / "a_"
        )
        inside = attached.phase()
        assert attached.ask("limit").startswith("oom: CUDA out of memory.")
        controller.send_signal(2)
        _, err = controller.communicate(timeout=120)
        assert controller.returncode == 0, err
        at_failure = live_at_failure(err)
        assert set(at_failure.values()) == set(tmp_path.glob(f"a_oom_{attached.pid}.*.heap"))
        sites = site_lines(inside)
        for name in ("pool_weights", "pool_grads"):
            assert report(at_failure["cuda"], exe)[name][1] == sites[name]["live_bytes"], name
        assert attached.quit() == 0
    finally:
        attached.kill()


def test_tensors_of_cached_segments_are_the_cuda_heaps_in_an_attached_window(
    pool, standin_dir, tmp_path
):
    """A window opened after the pool made its segments, in which the program makes no
    CUDA call of its own: the tensors its probes recorded are still the cuda heap's."""
    exe, _ = pool
    attached = Served(exe, standin_env(standin_dir))
    try:
        attached.phase()  # the segments made, the sampler not loaded yet
        controller = attach_window(
            attached.pid, "-c", "1", "--device-rate", "1", "-o", tmp_path / "a_"
        )
        inside = attached.ask("activations")
        controller.send_signal(2)
        out, err = controller.communicate(timeout=120)
        assert controller.returncode == 0, err
        heaps = by_heap([Path(p) for p in re.findall(r"(\S+\.heap)\b", out + err)])
        truth = site_lines(inside)["pool_activations"]
        assert "cuda" in heaps, (out, err)
        for index, key in INDEXES.items():
            assert (
                report(heaps["cuda"], exe, index).get("pool_activations", (0, 0))[1] == (truth[key])
            ), index
        assert attached.quit() == 0
    finally:
        attached.kill()
