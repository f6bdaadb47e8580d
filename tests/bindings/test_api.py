"""The in-process Python API (mem_profiler.start/stop/dump/mark/step/capture), in Python
processes started with the real sampler preloaded, and without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.heap_files import heap_text
from support.paths import LIBMEMPROF, MEM_PARSER, MEM_PROFILER

import mem_profiler
from mem_profiler import api

MiB = 2**20
PRELUDE = """
import ctypes, json, mem_profiler
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
"""


def python(code: str, preload: bool = True, **env: str) -> subprocess.CompletedProcess:
    """`code` in a new Python, with the sampler preloaded (idle), run in /tmp (`-c` puts the
    working folder first on sys.path, and the checkout's cmd/ would shadow the stdlib)."""
    environ = {"PATH": "/usr/bin:/bin", **env}
    if preload:
        environ["LD_PRELOAD"] = str(LIBMEMPROF)
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        cwd="/tmp",
    )


def test_capture_gives_the_exact_peak_and_live_bytes_of_the_block(tmp_path):
    proc = python(
        """
        with mem_profiler.capture() as cap:
            kept = libc.malloc(8 << 20)
            libc.free(libc.malloc(16 << 20))
            inside = (cap.live_bytes, cap.peak_bytes)
        print(json.dumps({"inside": inside, "peak": cap.peak_bytes, "live": cap.live_bytes,
                          "files": {h: str(p) for h, p in cap.files.items()},
                          "report": cap.report(nodecount=3), "capturing":
                          mem_profiler.is_capturing()}))
    """,
        MEMPROF_PYTHON="0",
        TMPDIR=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # the files were in a temporary folder, which the process's exit removed
    assert Path(out["files"]["host"]).parent.parent == tmp_path
    assert list(tmp_path.iterdir()) == []
    # The API makes no allocation of its own inside the window: the figures are the
    # block's, to the byte (Python's own objects, counted otherwise, are left out with
    # MEMPROF_PYTHON=0: tests/sampler/test_python_heap.py).
    assert out["inside"] == [8 * MiB, 24 * MiB]
    assert out["peak"] == 24 * MiB and out["live"] == 8 * MiB
    assert list(out["files"]) == ["host"] and not out["capturing"]
    assert out["report"].startswith("Total: 8.0 MB\n")
    assert "8.0 100.0%" in out["report"]


def test_the_profilers_own_frames_are_kept_out_of_reports(tmp_path):
    """Python's allocations tracked: what the API and cffi allocate inside the window goes
    to the program's function that called them, as the allocator's frames are cut."""
    proc = python(
        f"""
        def work():
            return [bytearray(1000) for _ in range(100)]
        with mem_profiler.capture(output="{tmp_path}/cap_") as cap:
            kept = work()
        print(cap.files["host"])
    """
    )
    assert proc.returncode == 0, proc.stderr
    heap = proc.stdout.strip()
    for report in ("-t", "--collapsed"):
        done = subprocess.run(
            [MEM_PARSER, "-f", heap, report], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "api.py" not in done.stdout and "/cffi/" not in done.stdout, done.stdout
    table = subprocess.run(
        [MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True, timeout=60
    ).stdout
    assert table.splitlines()[1].endswith(" work.<locals>.<listcomp> (<string>)"), table


def test_the_profilers_own_commands_profiled_keep_what_they_call(tmp_path):
    """mem_parser run under the sampler: its main and cli, the profiler's own code, are
    callers of the reader that allocates, not the allocator, and are not cut (cut, every
    stack would end at mem_parser's <module>)."""

    def profiled(prefix: str, *argv: str | Path) -> Path:
        run = subprocess.run(
            [MEM_PROFILER, "run", "-o", tmp_path / prefix, "--", *argv],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        (heap,) = tmp_path.glob(f"{prefix}*.heap")
        return heap

    profile = profiled("p_", MEM_PARSER, "-f", profiled("t_", "/bin/true"), "-t")
    done = subprocess.run(
        [MEM_PARSER, "-f", profile, "--collapsed", "--alloc_space"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stacks = [line.rsplit(" ", 1) for line in done.stdout.splitlines()]
    total = sum(int(value) for _, value in stacks)
    at_module = sum(int(v) for stack, v in stacks if stack.endswith("<module> (mem_parser)"))
    assert at_module < 0.05 * total, done.stdout
    assert any(";main (mem_parser.py);" in stack for stack, _ in stacks), done.stdout


def test_start_dump_stop_write_numbered_files(tmp_path):
    proc = python(f"""
        mem_profiler.start(rate=1, output="{tmp_path}/w_")
        first = mem_profiler.dump()
        second = mem_profiler.stop()
        try:
            mem_profiler.stop()
        except mem_profiler.CaptureError as e:
            error = str(e)
        print(json.dumps([str(first), str(second), error]))
    """)
    assert proc.returncode == 0, proc.stderr
    first, second, error = json.loads(proc.stdout)
    assert first.startswith(f"{tmp_path}/w_") and first.endswith(".0001.heap")
    assert second.endswith(".0002.heap")
    assert error == "no capture window is open in this process: start() one first"


def test_each_prefix_numbers_its_files_from_0001(tmp_path):
    """A window under a prefix of its own starts at 0001; back under an earlier prefix,
    after that prefix's files, never over them."""
    (tmp_path / "sub").mkdir()
    proc = python(f"""
        written = []
        for prefix in ("a_", "b_", "a_", "sub/a_"):
            mem_profiler.start(rate=1, output="{tmp_path}/" + prefix)
            written.append(str(mem_profiler.stop()))
        print(json.dumps(written))
    """)
    assert proc.returncode == 0, proc.stderr
    names = [path.removeprefix(f"{tmp_path}/").split(".", 1) for path in json.loads(proc.stdout)]
    assert [(stem.rstrip("0123456789"), rest) for stem, rest in names] == [
        ("a_", "0001.heap"),
        ("b_", "0001.heap"),
        ("a_", "0002.heap"),
        ("sub/a_", "0001.heap"),
    ]


def test_marks_and_steps():
    proc = python("""
        mem_profiler.mark("warm-up done")
        print(json.dumps([mem_profiler.step(), mem_profiler.step()]))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [1, 2]


def test_a_sampler_without_marks_says_so(monkeypatch):
    class OldSampler:  # a libmemprof.so from before memprof_mark
        memprof_is_capturing = staticmethod(lambda: 0)

    monkeypatch.setattr(api, "_process", OldSampler())
    with pytest.raises(NotImplementedError, match="has no memprof_mark: rebuild it"):
        mem_profiler.mark("x")


def test_capture_inside_an_open_window_is_refused(tmp_path):
    proc = python(
        """
        with mem_profiler.capture():
            pass
    """,
        MEMPROF_CAPTURE="1",
        MEMPROF_PREFIX=f"{tmp_path}/x_",
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        "CaptureError: a capture window is already open in this process (`mem_profiler run` "
        "without --idle opens one at start): stop() it first"
    ), proc.stderr


def test_every_call_without_the_sampler_says_how_to_start(tmp_path):
    """Every call says how to start the sampler, and leaves no file behind (capture()
    makes its temporary folder first)."""
    proc = python(
        """
        calls = [lambda: mem_profiler.start(), mem_profiler.stop, mem_profiler.dump,
                 lambda: mem_profiler.mark("x"), mem_profiler.step, mem_profiler.is_capturing,
                 mem_profiler.heap_bytes, lambda: mem_profiler.capture().__enter__()]
        errors = []
        for call in calls:
            try:
                call()
            except mem_profiler.SamplerNotLoaded as e:
                errors.append(str(e))
        print(json.dumps(errors))
    """,
        preload=False,
        TMPDIR=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout)
    assert errors == [api.NOT_LOADED] * 8
    assert list(tmp_path.iterdir()) == []
    assert "mem_profiler run --idle -- python" in api.NOT_LOADED


def test_a_controllers_log_window_leaves_the_processs_own_mode(tmp_path):
    """After a `mem_profiler -p --mode log` window, the program's own window (the API's,
    without a log) writes no event log: the controller's mode went with its window."""
    script = f"""
        import sys
        print("ready", flush=True)
        sys.stdin.readline()
        mem_profiler.start(rate=1, output="{tmp_path}/own_")
        libc.free(libc.malloc(1000))
        print(mem_profiler.stop(), flush=True)
    """
    environ = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(LIBMEMPROF)}
    proc = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environ,
        cwd="/tmp",
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        controller = subprocess.run(
            [
                MEM_PROFILER,
                "-p",
                str(proc.pid),
                "-s",
                "0.3",
                "--mode",
                "log",
                "-o",
                f"{tmp_path}/ctl_",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert controller.returncode == 0, controller.stderr
        assert list(tmp_path.glob("ctl_*.memlog"))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        own = Path(proc.stdout.readline().strip())
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert own.name == f"own_{proc.pid}.0001.heap"  # its prefix's first file
    assert not list(tmp_path.glob("own_*.memlog"))
    assert "# log:" not in heap_text(own)
