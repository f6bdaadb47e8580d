"""Fuzzing the readers through their real entry points (issue 12): mutations of a real
.heap file and of its event log, given to mem_parser's reports, and of budget files and
budget options, given to `mem_profiler gate`. Every input is answered by a report (exit 0)
or one line on stderr and exit 2: never a traceback, a hang, or an SVG that does not parse.

In this process through main(argv) for speed, each run under a time limit; a few inputs
also through the console script with its address space limited. Examples are drawn
deterministically (derandomize), so that a run of `make test` does not depend on luck;
about a minute in all. A long run draws more, at random:

    MEMPROF_FUZZ_SCALE=130 pytest tests/parser/test_fuzz_input.py -k fuzzed_heap_files
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import signal
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.paths import MEM_PARSER
from support.processes import limited_run
from support.profiling import profile_run, run_parser

from mem_profiler.cmd import mem_parser, mem_profiler

pytestmark = pytest.mark.long
TIME_LIMIT_S = 20  # per run; a clean one takes well under a second
# MEMPROF_FUZZ_SCALE=N: N times the examples, drawn at random: a long run's (make test's are
# the same each time)
FUZZ_SCALE = int(os.environ.get("MEMPROF_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * FUZZ_SCALE,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(BaseException):
    """A run went past TIME_LIMIT_S (a BaseException: the code under test catches none)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def answer(main, argv: list[str], *prefixes: str) -> int:
    """Run main(argv) here; its exit status, checked to be a report or an answer: status 0
    or 2, every line of stderr the command's own (starting with one of `prefixes`)."""
    out, err = io.TextIOWrapper(io.BytesIO()), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(TIME_LIMIT_S):
        try:
            main(argv)
            code: int | str = 0
        except SystemExit as e:
            code = e.code or 0
    text = err.getvalue()
    assert code in (0, 2), (code, text)
    assert text.endswith("\n") or not text, text
    assert all(line.startswith(prefixes) for line in text.splitlines()), text
    if code == 2:
        assert text, "exit 2 without a word"
    return code


class SeedFiles(dict):
    """The seed files (whose bytes hypothesis would otherwise print in full)."""

    def __repr__(self) -> str:
        return f"SeedFiles(exe={self['exe']!r})"


@pytest.fixture(scope="module")
def seed(build_fixture, tmp_path_factory) -> SeedFiles:
    """log_curve run under --mode log: its program, .heap bytes, .memlog bytes, and a work
    folder with a FIFO in it."""
    exe = build_fixture("log_curve")
    proc, heaps = profile_run([exe], tmp_path_factory.mktemp("seed") / "c_", 65536, "--mode", "log")
    assert proc.returncode == 0 and len(heaps) == 1, proc.stderr
    (log,) = Path(str(heaps[0])[: -len(".heap")]).parent.glob(heaps[0].stem + ".*.memlog")
    work = tmp_path_factory.mktemp("fuzz")
    os.mkfifo(work / "pipe")
    return SeedFiles(
        exe=str(exe),
        heap=heaps[0].read_bytes(),
        log=log.read_bytes(),
        seed_base=str(heaps[0])[: -len(".heap")],
        work=work,
    )


# Text that readers get wrong: numbers past every bound, escapes, broken encodings,
# structure of the formats in the wrong place, files that are not regular.
TOKENS = [
    b"9" * 400,
    b"18446744073709551616",
    b"18446744073709551615",
    b"9223372036854775808",
    b"-1",
    b"0",
    b"nan",
    b"inf",
    b"1e400",
    b"0x",
    b"ffffffffffffffffff",
    b"\\",
    b"\\x",
    b"\\x1F",
    b"\\n",
    b"\\012",
    b"\x00",
    b"\x01",
    b"\x1b[2J",
    b"\xff\xfe",
    b"\xc3",
    b"</script>",
    b"\n",
    b"\r\n",
    b"@ 0x1",
    b"  t*: 1: 1 [1: 1]\n",
    b"heap profile: ",
    b"%warn ",
    b"] @ heap/",
    b"--- Memory map: ---\n",
    b"# estimate: 1e300",
    b"\nMAPPED_LIBRARIES:\n",
    b"# heap: gpu\n",
    b"# heap: cuda\n",
    b"# log: /dev/zero\n",
    b"# pid: 99999999999\n",
    b"# failed_alloc: time_ns=1 bytes=2 error=-3 @ 0x10\n",
    b"# foreign: time_ns=1 bytes=2 kind=ipc_open address=0x7f00 @ 0x10\n",
    b"# dropped: stack_table=1 live_table=2 memory=3 bytes=4\n",
    b"{pipe}",
    b"10000000000000000-10000000000001000 r-xp 00000000 fe:01 1 {pipe}\n",
    b"00001000-00002000 r-xp 00000000 fe:01 1 /dev/zero\n",
]

# One mutation: (what, where in the data from 0 to 1, a token or random bytes, a length).
MUTATION = st.tuples(
    st.sampled_from(["insert", "replace", "number", "delete", "cut", "copy"]),
    st.floats(0, 1, exclude_max=True),
    st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=12)),
    st.integers(1, 64),
)


def mutate(data: bytes, mutations: list[tuple], pipe: Path) -> bytes:
    out = bytearray(data)
    for kind, where, token, length in mutations:
        at = int(where * len(out))
        token = token.replace(b"{pipe}", os.fsencode(pipe))
        if kind == "insert":
            out[at:at] = token
        elif kind == "replace":
            out[at : at + len(token)] = token
        elif kind == "number":  # a number of the text (decimal or hex) becomes the token
            numbers = list(re.finditer(rb"[0-9a-f]+", out))
            if numbers:
                m = numbers[int(where * len(numbers))]
                out[m.start() : m.end()] = token
        elif kind == "delete":
            del out[at : at + length]
        elif kind == "cut":
            del out[at:]
        else:  # a piece of the data again, elsewhere: a record or line out of place
            out[at:at] = out[int(where * at) : int(where * at) + length]
    return bytes(out)


# The reports of the .heap file and of the log, with the files they write.
HEAP_REPORTS = [
    ["-t"],
    ["-t", "--lines", "--alloc_objects"],
    ["--json"],
    ["--collapsed"],
    ["-s", "-o", "{work}/g.svg"],
    ["--flame", "{work}/f.html"],
    ["--pprof", "{work}/p.pb.gz"],
    ["-t", "--base", "{heap}"],
]
LOG_REPORTS = [
    ["--peak"],
    ["--leaks"],
    ["--leaks", "--json"],
    ["--timeline", "{work}/t.svg"],
    ["--at", "150"],
    ["--between", "ramp", "release"],
    ["--mark-leaks", "spike", "--timeline", "{work}/t.svg"],
]


def fuzz_parser(seed, heap: bytes, log: bytes, report: list[str], from_log: bool) -> None:
    """Write the capture's files (the .heap naming its log beside it) and ask for a report."""
    work: Path = seed["work"]
    for old in work.glob("*"):
        if old.name != "pipe":
            old.unlink()
    base = work / "x_1.0001"
    Path(f"{base}.heap").write_bytes(heap.replace(seed["seed_base"].encode(), bytes(base)))
    Path(f"{base}.1.memlog").write_bytes(log)
    given_file = f"{base}.1.memlog" if from_log else f"{base}.heap"
    argv = [
        "-p",
        seed["exe"],
        "-f",
        given_file,
        *(a.format(work=work, heap=f"{base}.heap") for a in report),
    ]
    code = answer(mem_parser.main, argv, "mem_parser: ")
    for svg in work.glob("*.svg"):
        if code == 0:
            ET.parse(svg)  # a written SVG parses as XML


@fuzz_settings(1500)
@given(
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    report=st.sampled_from(HEAP_REPORTS + LOG_REPORTS),
)
def test_fuzzed_heap_files(seed, mutations, report):
    heap = mutate(seed["heap"], mutations, seed["work"] / "pipe")
    fuzz_parser(seed, heap, seed["log"], report, from_log=False)


# The legacy heap profiles' first lines (parser/read/legacy.py), one of each kind.
LEGACY_HEADERS = ["heapprofile", "heap_v2/1024", "heapz_v2/1024", "heap/2048", "growthz"]
_JEPROF_STACK_RE = re.compile(
    rb"^@((?: 0x[0-9a-f]+)+)\n  t\*: (\d+): (\d+) \[(\d+): (\d+)\]$", re.M
)


@pytest.fixture(scope="module")
def legacy_seed(seed) -> bytes:
    """The seed's stacks and memory map as a legacy heap profile, its format left as
    '{format}': jemalloc's heap_v2 text (`--jeprof`) with each stack's counts moved in
    front of its addresses, as gperftools and Go write them."""
    text = seed["work"] / "seed.heap_v2"
    run_parser("-f", f"{seed['seed_base']}.heap", "--jeprof", text)
    stacks, _, maps = text.read_bytes().partition(b"\nMAPPED_LIBRARIES:\n")
    lines = [
        b"%s: %s [%s: %s] @%s" % (*counts, addrs)
        for addrs, *counts in _JEPROF_STACK_RE.findall(stacks)
    ]
    legacy = b"\n".join(
        [b"heap profile: 1: 2 [3: 4] @ {format}", *lines, b"MAPPED_LIBRARIES:", maps]
    )
    text.write_bytes(legacy.replace(b"{format}", b"heap/2048"))
    argv = ["-p", seed["exe"], "-f", str(text), "-t"]
    assert lines and answer(mem_parser.main, argv, "mem_parser: ") == 0
    text.unlink()
    return legacy


@fuzz_settings(400)
@given(
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    header=st.sampled_from(LEGACY_HEADERS),
    report=st.sampled_from(HEAP_REPORTS),
)
def test_fuzzed_legacy_heap_files(seed, legacy_seed, mutations, header, report):
    heap = mutate(
        legacy_seed.replace(b"{format}", header.encode()), mutations, seed["work"] / "pipe"
    )
    fuzz_parser(seed, heap, seed["log"], report, from_log=False)


@pytest.fixture(scope="module")
def proto_seed(seed) -> bytes:
    """The seed capture as --pprof writes it, inflated: a profile.proto naming its
    functions, as Go's are."""
    heap, pb = seed["work"] / "proto_seed.heap", seed["work"] / "proto_seed.pb.gz"
    heap.write_bytes(seed["heap"])
    assert answer(mem_parser.main, ["-p", seed["exe"], "-f", str(heap), "--pprof", str(pb)]) == 0
    data = gzip.decompress(pb.read_bytes())
    heap.unlink()
    pb.unlink()
    return data


@fuzz_settings(400)
@given(
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    report=st.sampled_from(HEAP_REPORTS),
)
def test_fuzzed_pprof_files(seed, proto_seed, mutations, report):
    """pprof's profile.proto damaged inside its gzip stream."""
    data = mutate(proto_seed, mutations, seed["work"] / "pipe")
    fuzz_parser(seed, gzip.compress(data, mtime=0), seed["log"], report, from_log=False)


@fuzz_settings(1500)
@given(
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    report=st.sampled_from(LOG_REPORTS),
    from_log=st.booleans(),
)
def test_fuzzed_event_logs(seed, mutations, report, from_log):
    log = mutate(seed["log"], mutations, seed["work"] / "pipe")
    fuzz_parser(seed, seed["heap"], log, report, from_log)


@fuzz_settings(8)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzzed_heap_files_through_the_console_script(seed, mutations):
    """The real process, its memory limited: exit 0 or 2, one line of error at most."""
    heap = seed["work"] / "console.heap"
    heap.write_bytes(mutate(seed["heap"], mutations, seed["work"] / "pipe"))
    done = limited_run(MEM_PARSER, "-p", seed["exe"], "-f", heap, "-t")
    assert done.returncode in (0, 2) and "Traceback" not in done.stderr, done.stderr
    errors = [
        line for line in done.stderr.splitlines() if not line.startswith("mem_parser: warning: ")
    ]
    assert len(errors) == (done.returncode == 2), done.stderr


BUDGET_SEED = b"""\
[host]
max-leak-per-stack = "1 MiB"
max-peak = 4096

[cuda]
max-live-at-exit = "0"

[commands.unit]
run = "./unit --quick 'a b'"
[commands.unit.host]
max-peak = "256 MiB"
max-growth-vs = "{baseline}"
tolerance = "2%"
"""
BUDGET_TOKENS = [
    b'"',
    b"'",
    b"[",
    b"]",
    b"=",
    b"\n",
    b"\\",
    b"\xff\xfe",
    b"\x00",
    b"{pipe}",
    b"/dev/zero",
    b"nan",
    b"inf",
    b"-1",
    b"9" * 400,
    b"1e999",
    b"[commands]",
    b"[[host]]",
    b"run = [1, 2]",
    b"max-total-alloc",
    b"KiB",
    b"EiB",
    b"%",
]
SIZES = st.one_of(
    st.sampled_from(
        [
            "64MiB",
            "1.5 GB",
            "cuda:1KiB",
            "gpu:1",
            "-1",
            "nan",
            "inf",
            "1e999",
            "9" * 400,
            "18446744073709551616",
            "0.5",
            ":",
            "host:",
            "\x00",
            "\udcff",
        ]
    ),
    st.text(max_size=12),
)


@fuzz_settings(800)
@given(
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["insert", "replace", "number", "delete", "cut", "copy"]),
            st.floats(0, 1, exclude_max=True),
            st.one_of(st.sampled_from(BUDGET_TOKENS), st.binary(min_size=1, max_size=8)),
            st.integers(1, 32),
        ),
        max_size=4,
    ),
    size=SIZES,
    tolerance=SIZES,
    name=st.sampled_from([None, "unit", "nope"]),
)
def test_fuzzed_budget_files_and_options(seed, mutations, size, tolerance, name):
    """The gate reads and plans; the commands it would run are not run."""
    work: Path = seed["work"]
    baseline = work / "x_1.0001.heap"
    baseline.write_bytes(seed["heap"])
    budget = work / "budget.toml"
    budget.write_bytes(
        mutate(BUDGET_SEED.replace(b"{baseline}", bytes(baseline)), mutations, work / "pipe")
    )
    argv = [
        "gate",
        "--budget",
        str(budget),
        "--max-peak",
        size,
        "--tolerance",
        tolerance,
        "--max-growth-vs",
        str(baseline),
        *(["--name", name] if name else []),
        "--",
        "true",
    ]
    with mock.patch("mem_profiler.gate.runner.run_gate", return_value=[]):
        answer(mem_profiler.main, argv, "mem_profiler: ", "mem_profiler gate: ")
