"""Go programs and statically linked ones, built by the real Go toolchain and gcc: what
`run`, `-p` and `dump` say of them, and cgo stacks unwound through runtime.asmcgocall
into the Go frames that made the call (tests/fixtures/go/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.paths import MEM_PROFILER
from support.profiling import SITES_EXACT, capture_cli, profile_run, run_parser

BLOCKS = 300  # cgo_blocks.go: malloc(4096) each, from main.main through cgo
BLOCK = 4096

NO_LOADER = "it has no dynamic loader to load the sampler with"


def started(argv: list[str | Path | int]) -> subprocess.Popen:
    """A program that prints "ready" and waits for a line on stdin, once it is ready."""
    proc = subprocess.Popen(
        [str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    return proc


def finish(proc: subprocess.Popen) -> int:
    proc.communicate("\n", timeout=60)
    return proc.returncode


def test_static_programs_are_named_in_run(go_build, build_fixture, tmp_path):
    go = go_build("static_wait", cgo=False)
    proc = subprocess.run(
        [MEM_PROFILER, "run", "-o", str(tmp_path / "x_"), "--", go],
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, "ready\n")
    assert proc.stderr == (
        f"mem_profiler: no profile of {go}, which is a statically linked Go program: "
        f"{NO_LOADER}, and Go's own heap never calls malloc; build it with cgo to see its "
        "C allocations, and use Go's pprof for its Go heap\n"
    )
    c = build_fixture("sites", "-static", output="sites_static")
    proc, files = profile_run([c, *SITES_EXACT], tmp_path / "c_")
    assert (proc.returncode, files) == (0, [])
    assert proc.stderr == (
        f"mem_profiler: no profile of {c}, which is statically linked: {NO_LOADER}; "
        "link it dynamically to profile it\n"
    )


def test_running_static_program_is_named_by_every_command(go_build):
    target = started([go_build("static_wait", cgo=False)])
    try:
        sentence = (
            f"mem_profiler: process {target.pid} is a statically linked Go program: {NO_LOADER}"
        )
        for args in (["-s", "1"], ["--attach", "-s", "1"]):
            refused = capture_cli(target.pid, *args)
            assert refused.returncode == 1 and refused.stderr.startswith(sentence), refused.stderr
        refused = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(target.pid)], capture_output=True, text=True
        )
        assert refused.returncode == 1 and refused.stderr.startswith(sentence), refused.stderr
    finally:
        assert finish(target) == 0


def test_cgo_program_says_why_it_wrote_no_profile(go_build, tmp_path):
    exe = go_build("cgo_blocks", cgo=True)
    proc, files = profile_run([exe, str(BLOCKS), "exit"], tmp_path / "x_")
    assert (proc.returncode, proc.stdout, files) == (0, f"ready {BLOCKS}\n", [])
    assert proc.stderr.startswith(
        f"mem_profiler: {exe} is a Go program: it leaves through exit_group without "
        "running exit handlers, so no profile is written at its end; take one while it "
        "runs (`mem_profiler dump -p PID`"
    ), proc.stderr


def test_cgo_stacks_go_on_into_the_go_frames(go_build, tmp_path):
    """Every block counted (-c 1) under the Go frames that called C: main.main and the
    cgo wrapper, above runtime.asmcgocall and the C function."""
    exe = go_build("cgo_blocks", cgo=True)
    run = started(
        [MEM_PROFILER, "run", "-c", "1", "-o", tmp_path / "x_", "--", exe, BLOCKS, "wait"]
    )
    try:
        pids = subprocess.run(
            ["pgrep", "-P", str(run.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(pids) == 1
        dumped = subprocess.run(
            [MEM_PROFILER, "dump", "-p", pids[0]], capture_output=True, text=True, timeout=30
        )
        assert dumped.returncode == 0, dumped.stderr
    finally:
        assert finish(run) == 0
    (heap,) = dumped.stdout.split()
    collapsed = run_parser("-f", heap, "-p", exe, "--collapsed")
    assert collapsed.returncode == 0, collapsed.stderr
    stacks = dict(line.rsplit(" ", 1) for line in collapsed.stdout.splitlines())
    blocks = {stack: int(v) for stack, v in stacks.items() if stack.endswith(";grab_block")}
    assert list(blocks.values()) == [BLOCKS * BLOCK], collapsed.stdout
    (stack,) = blocks
    assert ";main.main;main._Cfunc_grab_block.abi0;runtime.asmcgocall.abi0;" in stack, stack
    assert stack.startswith("runtime.goexit.abi0;runtime.main;"), stack
