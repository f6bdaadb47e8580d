"""Real GPU: PyTorch's tensors in the cuda heap through the caching allocator's USDT
probes (sampler/hooks/framework_pools.c), tests/gpu/torch_tensors.py's known tensors at
`--device-rate 1`: every figure of every site exact, the heap's live bytes exactly
torch.cuda.memory_allocated(), and the caching allocator's segments in cuda_segments
exactly memory_reserved(); under the native allocator, with expandable segments and
under the cudaMallocAsync backend, each at launch and in a window opened with --attach.
At a --device-rate that samples them, many known tensors' figures within the sampling
math. --torch-snapshot of a dump, in table and log mode, against the snapshot torch
itself took then.
Under the cudaMallocAsync backend no probe fires: the tensors are its cudaMallocAsync
calls, in the cuda heap as they are, and there are no segments.

Skipped without nvidia-smi on PATH, and when the Python that runs the workload
(TORCH_PYTHON, else this interpreter) has no torch with CUDA."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no nvidia-smi on PATH: no GPU to check against", allow_module_level=True)

from support.device import INDEXES, assert_sites_estimated, by_heap, site_lines  # noqa: E402
from support.paths import MEM_PARSER, MEM_PROFILER  # noqa: E402
from support.targets import attach_window  # noqa: E402

from mem_profiler.parser.model.aggregate import aggregate  # noqa: E402
from mem_profiler.parser.read.heap_file import read_heap  # noqa: E402
from mem_profiler.parser.symbols.symbolize import symbolize  # noqa: E402

WORKLOAD = Path(__file__).with_name("torch_tensors.py")
ALLOCATOR = re.compile(r"CUDACachingAllocator|c10::cuda")
MiB = 1 << 20


def figure(stdout: str, name: str) -> int:
    return int(re.findall(rf"^{name}=(\d+)$", stdout, re.M)[-1])


def rows(heap: Path, index: str) -> tuple[dict[str, float], float]:
    """{function: cum} and the total of one index of a heap."""
    profile = read_heap(heap)
    table = aggregate(symbolize(profile, profile.exe), index)
    return dict(zip(table.names, table.cum.tolist(), strict=True)), float(table.total)


def assert_tensors_exact(heaps: dict[str, Path], stdout: str, pooled: bool) -> None:
    sites = site_lines(stdout)
    assert len(sites) == 4, stdout
    for index, key in INDEXES.items():
        cum, _ = rows(heaps["cuda"], index)
        for name, truth in sites.items():
            got = cum.get(f"{name} ({WORKLOAD.name})", 0)
            assert got == truth[key], (name, index, got, truth[key])
    _, live = rows(heaps["cuda"], "inuse_space")
    assert live == figure(stdout, "memory_allocated"), stdout
    if pooled:  # the segments the caching allocator holds are memory_reserved
        profile = read_heap(heaps["cuda_segments"])
        sym = symbolize(profile, profile.exe, native=True)  # the allocator's frames
        inuse = sym.value("inuse_space")
        names, node_of = sym.node_names(full_names=True)
        held = sum(
            float(inuse[i])
            for i in inuse.nonzero()[0].tolist()
            if any(
                ALLOCATOR.search(names[n])
                for n in node_of[sym.frames[sym.offsets[i] : sym.offsets[i + 1]]]
            )
        )
        assert held == figure(stdout, "memory_reserved"), stdout
    else:
        assert "cuda_segments" not in heaps


class Served:
    """torch_tensors.py serve, started as `argv` (under `mem_profiler run`, or alone)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline().split()[1])

    @classmethod
    def without_sampler(cls, torch_python: str, conf: str) -> Served:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        env["PYTORCH_CUDA_ALLOC_CONF"] = conf
        return cls([torch_python, str(WORKLOAD), "serve"], env)

    def ask(self, command: str) -> str:
        """What the workload printed for `command` ("phase", "oom"), up to its "done"."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return "".join(iter(self.proc.stdout.readline, "done\n"))

    def phase(self) -> str:
        return self.ask("phase")

    def quit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=120)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# PyTorch's allocator as the program chose it: native, native with expandable segments,
# and CUDA's own pool (each tensor a cudaMallocAsync)
CONFS = ["", "expandable_segments:True", "backend:cudaMallocAsync"]


def attach(target: Served, prefix: Path) -> subprocess.Popen:
    """A window opened in the target with --attach, every tensor recorded."""
    return attach_window(target.pid, "-c", "1024", "--device-rate", "1", "-o", prefix, timeout=120)


def heap_files(output: str) -> dict[str, Path]:
    return by_heap([Path(p) for p in re.findall(r"(\S+\.heap)\b", output)])


def dumped_at_launch(
    torch_python: str,
    prefix: Path,
    conf: str,
    command: str,
    device_rate: int,
    mode: str = "table",
    then: str | None = None,
) -> tuple[str, dict[str, Path]]:
    """The workload served under `mem_profiler run --mode MODE`, asked `command` (and
    `then`): what it printed for `command`, and the files of a dump taken while its
    tensors are live (the exit's profile comes after the interpreter freed them).  The
    window opens before torch is imported."""
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF=conf)
    cmd = [MEM_PROFILER, "run", "-c", "1024", "--device-rate", str(device_rate)]
    cmd += ["--mode", mode, "-o", str(prefix)]
    target = Served([*map(str, cmd), "--", torch_python, str(WORKLOAD), "serve"], env)
    try:
        inside = target.ask(command)
        if then is not None:
            target.ask(then)
        dump = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(target.pid)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert dump.returncode == 0, dump.stderr
        assert target.quit() == 0
    finally:
        target.kill()
    return inside, heap_files(dump.stdout)


@pytest.mark.parametrize("conf", CONFS, ids=str)
def test_tensors_exact_at_launch(torch_python, tmp_path, conf):
    inside, heaps = dumped_at_launch(torch_python, tmp_path / "t_", conf, "phase", 1)
    assert_tensors_exact(heaps, inside, pooled="cudaMallocAsync" not in conf)


def test_tensors_estimated_at_a_sampling_rate(torch_python, tmp_path):
    """At --device-rate 64 KiB a tensor is sampled with p = 1 - exp(-size/rate): each
    site's figures within the sampling math of the workload's own."""
    rate = 64 * 1024
    inside, heaps = dumped_at_launch(torch_python, tmp_path / "s_", "", "many", rate)
    sites = site_lines(inside)
    assert set(sites) == {"many_kept", "many_churned"}, inside

    def cum_of(index: str) -> dict[str, float]:
        cum, _ = rows(heaps["cuda"], index)
        return {name: cum.get(f"{name} ({WORKLOAD.name})", 0.0) for name in sites}

    assert_sites_estimated(sites, rate, cum_of)


@pytest.mark.parametrize("conf", CONFS, ids=str)
def test_tensors_exact_in_an_attached_window(torch_python, tmp_path, conf):
    target = Served.without_sampler(torch_python, conf)
    try:
        controller = attach(target, tmp_path / "a_")
        inside = target.phase()
        controller.send_signal(2)
        out, err = controller.communicate(timeout=300)
        assert controller.returncode == 0, err
        # the window opened after the first tensors' segments: only its own are there
        assert_tensors_exact({"cuda": heap_files(out + err)["cuda"]}, inside, pooled=False)
        after = target.phase()  # detached: the allocator runs on as before
        assert figure(after, "memory_allocated") == figure(inside, "memory_allocated")
        assert target.quit() == 0
    finally:
        target.kill()


@pytest.mark.parametrize("conf", CONFS, ids=str)
def test_an_out_of_memory_error_in_an_attached_window(torch_python, tmp_path, conf):
    """The workload, started without the sampler, runs out of device memory in a window
    opened with --attach: its own error unchanged, and the files written as it was
    raised, which the controller names, hold hold_for_step's 768 MiB in the cuda heap,
    exactly memory_allocated() then."""
    target = Served.without_sampler(torch_python, conf)
    try:
        controller = attach(target, tmp_path / "o_")
        said = target.ask("oom")
        controller.send_signal(2)
        out, err = controller.communicate(timeout=300)
        assert controller.returncode == 0, err
        assert target.quit() == 0
    finally:
        target.kill()
    assert "error=OutOfMemoryError\n" in said, said
    found = re.search(r"out of device memory; what was live then: (\S+\.cuda\.heap)", out + err)
    assert found, out + err
    cum, live = rows(Path(found[1]), "inuse_space")
    assert live == figure(said, "memory_allocated")
    assert cum.get(f"hold_for_step ({WORKLOAD.name})") == 3 * 256 * MiB, cum


@pytest.mark.parametrize("mode", ["table", "log"])
def test_the_torch_snapshot_is_torchs_own(torch_python, tmp_path, mode):
    """--torch-snapshot of a dump taken while a phase's tensors are live, against
    torch.cuda.memory._snapshot() taken by the program then: each of torch's segments is
    one of ours, at its address and of its size, with the same active blocks (address
    and bytes asked for). Ours has more segments where other libraries called
    cudaMalloc (docs/devices.md)."""
    theirs = tmp_path / "theirs.pickle"
    _, heaps = dumped_at_launch(
        torch_python, tmp_path / "t_", "", "phase", 1, mode, then=f"snapshot {theirs}"
    )
    ours = tmp_path / "ours.pickle"
    done = subprocess.run(
        [MEM_PARSER, "-f", heaps["cuda"], "--torch-snapshot", ours],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    def segments(path: Path) -> dict[int, dict]:
        with open(path, "rb") as f:
            return {s["address"]: s for s in pickle.load(f)["segments"]}

    def active(segment: dict) -> list[tuple[int, int]]:
        return sorted(
            (b["address"], b["requested_size"])
            for b in segment["blocks"]
            if b["state"] == "active_allocated"
        )

    mine = segments(ours)
    for address, segment in segments(theirs).items():
        assert address in mine and mine[address]["total_size"] == segment["total_size"]
        assert active(mine[address]) == active(segment), address
