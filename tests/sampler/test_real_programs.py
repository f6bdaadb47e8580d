"""Programs as they ship (issue 11): Debian's stripped, frame-pointer-less, LTO builds,
a Rust program, the JVM and the Python interpreter, run under the sampler with every
unwinder. Their totals are held against a truth the sampler has no part in: the tests'
own preload (fixtures/counting_preload.c), which counts every allocation of the
capture window."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection
from support.counting import (
    SAMPLED_RATE,
    Truth,
    assert_exact,
    assert_sampled,
    counted_environment,
    pid_files,
    plain_environment,
    totals,
)
from support.paths import FIXTURES, MEM_PARSER, MEM_PROFILER
from support.profiling import profile_run, run_parser

from mem_profiler.control.control_block import ControlBlock, ControlError
from mem_profiler.core.profile import Drops
from mem_profiler.parser.read.heap_file import read_heap

WORKLOADS = FIXTURES / "real_programs"
UNWINDERS = ("hybrid", "libunwind", "fp")
RUN_TIMEOUT = 120  # seconds: "ends in time" under any unwinder, at any rate


def run_in_session(
    argv: list[str], env: dict[str, str], timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess:
    """argv in a session of its own; past `timeout` it is killed with every process it
    started, and the test fails."""
    with subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{' '.join(argv)[:200]} did not end in {timeout} s")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# --- the programs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """argv's {work} is a folder of prepared inputs, {out} one per run."""

    argv: tuple[str, ...]
    measured: str | None = None  # executable whose totals are checked; None: argv[0]
    env: dict[str, str] = field(default_factory=dict)
    follow_children: bool = False

    def command(self, work: Path, out: Path) -> list[str]:
        return [a.format(work=work, out=out) for a in self.argv]

    def measured_name(self) -> str:
        if self.measured:
            return self.measured
        program = shutil.which(self.argv[0])
        assert program is not None, self.argv[0]
        return os.path.basename(os.path.realpath(program))


# Each workload is large enough that 5 standard deviations of the estimates at -c 1024
# fit in the bounds (checked by assert_estimate from the truth's sizes), and allocates
# far more than the 33 KB the sampler's own control thread takes inside the window
# (see test_the_samplers_own_allocations_stay_out_of_the_window).
SQLITE_ROWS = 250_000
RG_TREE_FILES, RG_PASSES = 5000, 14
PROGRAMS = {
    "sqlite3": Program(
        (
            "sqlite3",
            ":memory:",
            "create table t(a integer, b text, c real); insert into t select value, "
            f"hex(randomblob(16)), random() from generate_series(1, {SQLITE_ROWS}); "
            "create index i1 on t(b); create index i2 on t(c);",
        )
    ),
    "rg": Program(("rg", "--threads", "2", "--count", "alpha", *["{work}/tree"] * RG_PASSES)),
    "java": Program(("java", "-cp", "{work}", "DirectBuffers", "4", "15000", "1000")),
    "python3": Program(
        ("/usr/bin/python3", str(WORKLOADS / "objects.py"), "20000"), env={"PYTHONMALLOC": "malloc"}
    ),
    "g++": Program(
        ("g++", "-O2", "-o", "{out}/grouping", str(WORKLOADS / "grouping.cpp")),
        measured="cc1plus",
        follow_children=True,
    ),
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Inputs: DirectBuffers compiled by javac, a tree of files for rg."""
    folder = tmp_path_factory.mktemp("real_programs")
    subprocess.run(
        ["javac", "-d", str(folder), str(WORKLOADS / "DirectBuffers.java")],
        check=True,
        timeout=RUN_TIMEOUT,
    )
    for i in range(RG_TREE_FILES):  # long names: rg's allocations per file are larger
        sub = folder / "tree" / f"section_{i // 100:02d}_of_the_tree" / "a_folder_with_a_long_name"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file_number_{i % 100:03d}_with_some_text.txt").write_text(f"alpha {i}\nbeta\n")
    return folder


@dataclass
class Run:
    result: subprocess.CompletedProcess
    heaps: dict[int, Path]  # pid: its .heap
    truths: dict[int, Truth]  # pid: what the preload counted in its window

    def measured(self, name: str) -> tuple[Path, Truth]:
        pids = []
        for p, heap in self.heaps.items():
            exe = read_heap(heap).exe
            assert exe is not None, heap
            if os.path.basename(exe) == name:
                pids.append(p)
        (pid,) = pids
        return self.heaps[pid], self.truths[pid]


@pytest.fixture(scope="module")
def runs(counting_preload, work, tmp_path_factory):
    """run(program, unwinder, rate): the program under `mem_profiler run` with the
    counting preload, once per module; unwinder None: the program alone."""
    done: dict[tuple[str, str | None, int], Run | subprocess.CompletedProcess] = {}

    def run(name: str, unwinder: str | None = None, rate: int = 1):
        key = (name, unwinder, rate)
        if key not in done:
            program = PROGRAMS[name]
            if shutil.which(program.argv[0]) is None:
                pytest.fail(f"{program.argv[0]} is not installed: run the tests with `make test`")
            out = tmp_path_factory.mktemp(f"{name}_{unwinder}_{rate}")
            argv = program.command(work, out)
            if unwinder is None:
                done[key] = run_in_session(argv, plain_environment(**program.env))
            else:
                follow = ["--follow-children"] if program.follow_children else []
                result = run_in_session(
                    [
                        MEM_PROFILER,
                        "run",
                        "-c",
                        str(rate),
                        "-o",
                        f"{out}/p_",
                        "--unwind",
                        unwinder,
                        *follow,
                        "--",
                        *argv,
                    ],
                    counted_environment(counting_preload, out / "truth.", **program.env),
                )
                truths = {
                    pid: Truth.read(path) for pid, path in pid_files(out, r"truth\.(\d+)").items()
                }
                done[key] = Run(
                    result,
                    pid_files(out, r"p_(\d+)\.0001\.heap"),
                    {pid: t for pid, t in truths.items() if t.in_window},
                )
        return done[key]

    return run


def checked_run(runs, name: str, unwinder: str, rate: int) -> Run:
    """The run, having ended as the program ends alone, with a profile and a truth for
    each process that captured and no sample dropped."""
    plain, run = runs(name), runs(name, unwinder, rate)
    assert run.result.returncode == plain.returncode, run.result.stderr[-2000:]
    assert sorted(run.result.stdout.splitlines()) == sorted(plain.stdout.splitlines())
    assert run.heaps and run.heaps.keys() == run.truths.keys(), run.result.stderr[-2000:]
    for heap in run.heaps.values():
        assert read_heap(heap).drops == Drops(0, 0, 0, 0), heap
    return run


# --- programs run under the sampler -----------------------------------------------------

PROGRAM_UNWINDERS = [
    pytest.param(name, unwinder, id=f"{name}-{unwinder}")
    for name in PROGRAMS
    for unwinder in UNWINDERS
]


@pytest.mark.parametrize("name, unwinder", PROGRAM_UNWINDERS)
def test_every_allocation_recorded(runs, name, unwinder):
    """-c 1: the totals of the window are the truth's, within 0.1%."""
    run = checked_run(runs, name, unwinder, 1)
    assert_exact(*run.measured(PROGRAMS[name].measured_name()))


@pytest.mark.parametrize("name, unwinder", PROGRAM_UNWINDERS)
def test_sampled_estimates_within_the_sampling_math(runs, name, unwinder):
    """-c 1024: bytes within 3%, objects within 5%, both within 5 standard deviations."""
    run = checked_run(runs, name, unwinder, SAMPLED_RATE)
    assert_sampled(*run.measured(PROGRAMS[name].measured_name()))


def has_symbol_table(path: str) -> bool:
    """Whether the ELF file has .symtab, or a debug file installed under its build-id."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        if elf.get_section_by_name(".symtab") is not None:
            return True
        note = elf.get_section_by_name(".note.gnu.build-id")
        assert note is None or isinstance(note, NoteSection)
        build_id = next(note.iter_notes())["n_desc"] if note is not None else None
    if not build_id:
        return False
    return os.path.exists(f"/usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug")


def assert_read_against(binary: str, heap: Path) -> None:
    """mem_parser reads the profile against the shipped binary: no refusal; a program
    whose frames stay addresses for want of a symbol table is said to be so, and no
    other. The warning is the profile's, whichever sample index a report shows: the
    frames are those of the stacks of some weight, every one of which allocated."""
    exe = read_heap(heap).exe
    assert exe is not None, heap
    proc = subprocess.run(
        [MEM_PARSER, "-p", binary, "-f", str(heap), "--collapsed", "--alloc_space"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    warned = f"{binary} has no symbol table" in proc.stderr
    unnamed = f";{os.path.basename(exe)}+0x" in proc.stdout.replace("\n", "\n;")
    assert warned == (unnamed and not has_symbol_table(exe)), proc.stderr


@pytest.mark.parametrize("name", PROGRAMS)
def test_profile_read_against_the_shipped_binary(runs, name):
    run = runs(name, "hybrid", 1)
    program = PROGRAMS[name]
    heap, _ = run.measured(program.measured_name())
    binary = read_heap(heap).exe if program.measured else shutil.which(program.argv[0])
    assert binary is not None
    assert_read_against(binary, heap)


def test_the_jvms_first_row_is_the_function_that_asked(runs):
    """HotSpot takes its native memory through its own os::malloc and AllocateHeap, which
    are cut as malloc is: the first row of the JVM's table is the function that asked,
    for DirectBuffers Unsafe_AllocateMemory0 (ByteBuffer.allocateDirect) with its 60,000
    buffers of 1,000 bytes to the byte at -c 1, not os::malloc with all of it."""
    run = checked_run(runs, "java", "hybrid", 1)
    heap, _ = run.measured("java")
    rows = parser_rows(heap)
    assert rows[0] == {
        "name": "Unsafe_AllocateMemory0",
        "flat": 4 * 15000 * 1000.0,
        "cum": 4 * 15000 * 1000.0,
    }
    assert not [r for r in rows if r["name"].startswith(("os::malloc", "AllocateHeap"))]


LIBCRYPTO = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"


def test_openssls_allocation_functions_are_cut_as_mallocs_are(build_fixture, tmp_path):
    """A program's memory from OpenSSL's CRYPTO_zalloc and CRYPTO_strdup, as Debian's
    libcrypto.so.3 ships them, is its functions' that asked, to the byte at -c 1 (the
    fixture's counts: 3,000 blocks of 1,000 bytes, 2,000 copies of 32, and each
    function's array of pointers to them); CRYPTO_* is no row."""
    exe = build_fixture("crypto_allocs", libs=(LIBCRYPTO,))
    proc, files = profile_run([str(exe), "3000", "2000"], tmp_path / "c_", 1)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    rows = {row["name"]: row["flat"] for row in parser_rows(files[0], exe)}
    assert rows["keys"] == 3000 * (1000 + 8) and rows["names"] == 2000 * (32 + 8), rows
    assert not [name for name in rows if name.startswith("CRYPTO_")], rows


# V8's functions that take memory from malloc for their callers (its allocation.h)
V8_ALLOCATION = ("Malloced::", "NewArray", "StrDup", "StrNDup", "AllocWithRetry",
                 "AllocAtLeastWithRetry", "AlignedAlloc")  # fmt: skip
# a program that compiles: V8's parser and compilers work in zones, whose segments V8's
# AccountingAllocator takes through AllocAtLeastWithRetry
NODE_SCRIPT = (
    "let s = 0; for (let i = 0; i < 300; i++) s += new Function('a', 'return a + ' + i)(i);"
)


def test_v8s_allocation_functions_are_cut_as_mallocs_are(counting_preload, tmp_path):
    """Node.js as installed: V8's own malloc wrappers are cut as malloc is, so that no row
    is one of them and the zones' segments are AccountingAllocator::AllocateSegment's,
    the function that asked; at -c 1 the table's total is what the counting preload
    counted, nothing lost to the cut."""
    result = run_in_session(
        [MEM_PROFILER, "run", "-c", "1", "-o", f"{tmp_path}/n_", "--", "node", "-e", NODE_SCRIPT],
        counted_environment(counting_preload, tmp_path / "truth."),
    )
    assert result.returncode == 0, result.stderr
    ((pid, heap),) = pid_files(tmp_path, r"n_(\d+)\.0001\.heap").items()
    rows = {row["name"]: row["flat"] for row in parser_rows(heap)}
    if not any(name.startswith("v8::internal::") for name in rows):
        pytest.skip("this node names none of V8's functions (stripped): none to cut by name")
    truth = Truth.read(tmp_path / f"truth.{pid}")
    assert (sum(rows.values()), totals(heap)[0]) == (truth.bytes, truth.objects)
    wrappers = [n for n in rows if n.removeprefix("v8::internal::").startswith(V8_ALLOCATION)]
    assert not wrappers, wrappers
    assert rows.get("v8::internal::AccountingAllocator::AllocateSegment", 0) > 0, rows


def parser_rows(heap: Path, program: Path | None = None) -> list[dict]:
    """The rows of mem_parser --json of `heap` by allocated bytes."""
    options: list[str | Path] = ["-p", program] if program else []
    done = run_parser("-f", heap, "--alloc_space", "--json", *options, timeout=RUN_TIMEOUT)
    return json.loads(done.stdout)["rows"]


def test_the_samplers_own_allocations_stay_out_of_the_window(counting_preload, tmp_path):
    """A program that allocates little: every allocation of the window is the program's,
    so at -c 1 the file holds exactly what the preload counted."""
    result = run_in_session(
        [MEM_PROFILER, "run", "-c", "1", "-o", f"{tmp_path}/p_", "--", "sleep", "0.3"],
        counted_environment(counting_preload, tmp_path / "truth."),
    )
    assert result.returncode == 0, result.stderr
    ((pid, heap),) = pid_files(tmp_path, r"p_(\d+)\.0001\.heap").items()
    truth = Truth.read(tmp_path / f"truth.{pid}")
    assert totals(heap) == (truth.objects, truth.bytes)


# --- redis-server, attached under load ---------------------------------------------------

REDIS_REQUESTS = 30_000  # per command of the benchmark
REDIS_BENCHMARK = ("-c", "10", "-P", "16", "-q", "-t", "set,get,lpush,lpop,hset")


class Redis:
    """redis-server on 127.0.0.1 at a free port, without persistence."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--loglevel",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while self.ping() != "+PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)

    def ping(self) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).decode().strip()
        except OSError:
            return ""

    def benchmark(self) -> None:
        subprocess.run(
            [
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-n",
                str(REDIS_REQUESTS),
                *REDIS_BENCHMARK,
            ],
            check=True,
            timeout=RUN_TIMEOUT,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> int:
        """SIGTERM (redis's own shutdown); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_server(counting_preload, tmp_path, unwinder):
    """redis-server with the counting preload, the sampler's unwinder chosen for when it
    is attached."""
    server = Redis(
        tmp_path,
        counted_environment(counting_preload, tmp_path / "truth.", MEMPROF_UNWIND=unwinder),
    )
    yield server
    server.stop()


def capturing(pid: int) -> bool:
    """Whether pid's control block says a window is open (read, not asked for)."""
    with contextlib.suppress(ControlError), ControlBlock.open(pid) as block:
        return block.status().capturing
    return False


def attached_window(server: Redis, rate: int, prefix: Path, truth_file: Path) -> tuple[Path, Truth]:
    """`mem_profiler -p PID --attach` opens a window; the benchmark runs strictly inside
    it, between two readings of the counters; Ctrl-C closes it. The heap, and the
    benchmark's truth."""
    controller = subprocess.Popen(
        [
            MEM_PROFILER,
            "-p",
            str(server.proc.pid),
            "--attach",
            "-s",
            str(RUN_TIMEOUT),
            "-c",
            str(rate),
            "-o",
            str(prefix),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not capturing(server.proc.pid):
            assert controller.poll() is None, controller.communicate()[1]
            assert time.monotonic() < deadline, "no window opened"
            time.sleep(0.02)
        before = Truth.read(truth_file)
        server.benchmark()
        during = Truth.read(truth_file) - before
        controller.send_signal(signal.SIGINT)
        out, err = controller.communicate(timeout=RUN_TIMEOUT)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    assert controller.returncode == 0, err
    assert out.startswith("succeeded in collecting memory data!"), out
    return Path(out.split()[-1]), during


@pytest.fixture(scope="module")
def redis_plain_status(tmp_path_factory) -> int:
    server = Redis(tmp_path_factory.mktemp("redis_plain"), plain_environment())
    return server.stop()


@pytest.mark.parametrize("unwinder", UNWINDERS)
def test_redis_attached_under_load(redis_server, redis_plain_status, tmp_path):
    """redis-server (stripped, jemalloc) started without the sampler, attached while
    redis-benchmark runs: exact at -c 1, within the sampling math at -c 1024; detached,
    it still answers and ends as it ends without the sampler."""
    truth_file = tmp_path / f"truth.{redis_server.proc.pid}"
    heap, truth = attached_window(redis_server, 1, tmp_path / "exact_", truth_file)
    assert read_heap(heap).drops == Drops(0, 0, 0, 0)
    assert_exact(heap, truth)
    assert_read_against("/usr/bin/redis-server", heap)

    heap, truth = attached_window(redis_server, SAMPLED_RATE, tmp_path / "sampled_", truth_file)
    assert read_heap(heap).drops == Drops(0, 0, 0, 0)
    assert_sampled(heap, truth)

    released = subprocess.run(
        [MEM_PROFILER, "detach", "-p", str(redis_server.proc.pid)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert released.returncode == 0, released.stderr
    assert redis_server.ping() == "+PONG"
    assert redis_server.stop() == redis_plain_status
