"""mem_parser's reports compared whole, byte for byte, with the files in
tests/data/expected/ (as heaptrack keeps tests/auto/*.expected): a change to what a
report prints shows up as a diff of those files in review. MEMPROF_UPDATE_EXPECTED=1
rewrites them from what mem_parser prints now (docs/development.md, *Building and
testing*).

The inputs are .heap files written here (support/synthetic_heaps.py) whose frames are
functions of the fixtures built for the session, named by symbol: their addresses change
with the compiler, their names do not. The programs ran on another machine, under
THERE, which holds nothing here: its libraries' frames stay `libc.so.6+0x...` on every
machine, and the programs are given with -p, copied into the folder the reports run
in."""

from __future__ import annotations

import difflib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.paths import ROOT
from support.synthetic_heaps import Mapped, Site, heap_text

from mem_profiler.cmd.mem_parser import cli
from mem_profiler.core.profile import FRAME_BASE

EXPECTED = ROOT / "tests" / "data" / "expected"
UPDATE = os.environ.get("MEMPROF_UPDATE_EXPECTED") == "1"
THERE = "/nonexistent/golden"  # where the programs ran; no such folder here
MiB = 1 << 20
START_NS = 1763750000000000000  # the first window's start
LIBC_START_CALL_MAIN, LIBC_START_MAIN = 0x2724A, 0x27305  # return addresses into libc


@dataclass(frozen=True)
class Case:
    """One report: the file it is compared with and mem_parser's arguments (paths
    relative to the folder the heaps are in)."""

    expected: str
    args: str


# sites: sites.c's functions, one run of it (window 2) and an earlier window (1), with a
# device heap beside window 2's host heap.
SITES_CASES = [
    Case("sites.t.txt", "-p sites -f sites_4242.0002.heap -t"),
    Case("sites.collapsed.txt", "-p sites -f sites_4242.0002.heap --collapsed"),
    Case("sites.json", "-p sites -f sites_4242.0002.heap --json"),
    Case("sites.alloc_space.t.txt", "-p sites -f sites_4242.0002.heap -t --alloc_space"),
    Case(
        "sites.inuse_objects.collapsed.txt",
        "-p sites -f sites_4242.0002.heap --collapsed --inuse_objects",
    ),
    Case("sites.alloc_objects.json", "-p sites -f sites_4242.0002.heap --json --alloc_objects"),
    Case("sites.lines.t.txt", "-p sites -f sites_4242.0002.heap -t --lines"),
    Case(
        "sites.focus.collapsed.txt",
        "-p sites -f sites_4242.0002.heap --collapsed --focus ^site_ --ignore small",
    ),
    Case("sites.nodecount.t.txt", "-p sites -f sites_4242.0002.heap -t --nodecount 3"),
    Case("sites.base.t.txt", "-p sites -f sites_4242.0002.heap -t --base sites_4242.0001.heap"),
    Case(
        "sites.base.collapsed.txt",
        "-p sites -f sites_4242.0002.heap --collapsed --base sites_4242.0001.heap",
    ),
    Case("sites.base.json", "-p sites -f sites_4242.0002.heap --json --base sites_4242.0001.heap"),
    Case("capture.t.txt", "-p sites -f sites_4242.0002 -t"),
    Case("capture.cuda.t.txt", "-p sites -f sites_4242.0002 --heap cuda -t"),
]
# widgets: cxx_new.cpp's functions, C++ names short and in full.
WIDGETS_CASES = [
    Case("widgets.t.txt", "-p cxx_new -f cxx_new_4343.0001.heap -t"),
    Case("widgets.full_names.t.txt", "-p cxx_new -f cxx_new_4343.0001.heap -t --full-names"),
    Case("widgets.collapsed.txt", "-p cxx_new -f cxx_new_4343.0001.heap --collapsed"),
    Case(
        "widgets.full_names.collapsed.txt",
        "-p cxx_new -f cxx_new_4343.0001.heap --collapsed --full-names",
    ),
]
# python: Python frames among the native ones, folded by default, shown by function
# unless --lines (`Store.add (store.py)`, `Store.add (store.py:12)`).
PYTHON_CASES = [
    Case("python.t.txt", "-p sites -f python_4444.0001.heap -t"),
    Case("python.collapsed.txt", "-p sites -f python_4444.0001.heap --collapsed"),
    Case("python.native.collapsed.txt", "-p sites -f python_4444.0001.heap --collapsed --native"),
    Case("python.lines.t.txt", "-p sites -f python_4444.0001.heap -t --lines"),
]
CASES = [*SITES_CASES, *WIDGETS_CASES, *PYTHON_CASES]


@pytest.fixture(scope="module")
def heaps(build_fixture, tmp_path_factory) -> Path:
    """A folder holding the programs (sites, cxx_new) and the .heap files of their runs."""
    folder = tmp_path_factory.mktemp("expected")
    for name in ("sites", "cxx_new"):
        shutil.copy(build_fixture(name), folder / name)
    for name, text in sites_heaps(folder / "sites").items():
        (folder / name).write_text(text)
    (folder / "cxx_new_4343.0001.heap").write_text(widgets_heap(folder / "cxx_new"))
    (folder / "python_4444.0001.heap").write_text(python_heap(folder / "sites"))
    return folder


def header(pid: int, cmdline: str, exe: Mapped, heap: str, window: int, *more: str) -> list[str]:
    """The `#` lines of window `window` (1, 2, ...) of process pid, its exe's build-id
    last."""
    start = START_NS + (window - 1) * 10**10
    return [
        "# mem_profiler 0.1.0",
        f"# pid: {pid}",
        f"# cmdline: {cmdline}",
        f"# exe: {exe.path}",
        f"# heap: {heap}",
        f"# window_start_ns: {start}",
        f"# window_end_ns: {start + 2_500_000_000}",
        "# unwinder: hybrid",
        "# max_depth: 64",
        *more,
        exe.build_id(),
    ]


def startup(exe: Mapped, libc: Mapped) -> list[int]:
    """main and what calls it, leaf first: libc's start-up, the program's _start."""
    return [
        exe.frame("main"),
        libc.at(LIBC_START_CALL_MAIN),
        libc.at(LIBC_START_MAIN),
        exe.frame("_start"),
    ]


def sites_heaps(binary: Path) -> dict[str, str]:
    """Two windows of `sites 12288 4096 8` (leaf first: the site, main, libc's start-up,
    _start) with two stacks of other objects: a JIT's code, called from main, and libc
    allocating for itself; the JIT's code shrinks between them and site_pages grows
    (window 1: 4096 pages, window 2: 12288). Window 2 also has a cuda heap: a framework
    library's allocations, and one that failed."""
    exe = Mapped(f"{THERE}/bin/sites", 0x555555554000, binary)
    libc = Mapped(f"{THERE}/lib/libc.so.6", 0x7FFFF7D80000, size=0x1A0000)
    framework = Mapped(f"{THERE}/lib/libframework.so", 0x7FFFF7F40000, size=0x10000)
    jit = Mapped("", 0x7FFFE0000000, size=0x10000)
    mapped = [exe, framework, libc, jit]

    main = startup(exe, libc)

    def sites(pages: int, jit_mib: int) -> list[Site]:
        return [
            Site([exe.frame("site_pages"), *main], pages, pages * 4096, pages, pages * 4096),
            Site([exe.frame("site_small"), *main], 4096, MiB, 4096, MiB),
            Site([exe.frame("site_transient"), *main], 0, 0, 8, 8 * MiB),
            Site([jit.at(0x1A40), *main], 256 * jit_mib, jit_mib * MiB, 1024, 4 * MiB),
            Site([libc.at(0x8A2B0), *main], 2, MiB // 2, 3, MiB),
        ]

    cmdline = "./sites 12288 4096 8"
    weights = [framework.at(0x41A7), *main]
    return {
        "sites_4242.0001.heap": heap_text(
            524288,
            header(4242, cmdline, exe, "host", 1, "# dropped_samples: 0"),
            sites(4096, 3),
            mapped,
        ),
        "sites_4242.0002.heap": heap_text(
            524288,
            header(
                4242,
                cmdline,
                exe,
                "host",
                2,
                "# dropped_samples: 3",
                "# dropped: stack_table=0 live_table=3 memory=0 bytes=1572864",
            ),
            sites(12288, 2),
            mapped,
        ),
        "sites_4242.0002.cuda.heap": heap_text(
            1,
            header(
                4242,
                cmdline,
                exe,
                "cuda",
                2,
                f"# failed_alloc: time_ns={START_NS + 10**10 + 1_200_000_000} bytes={1 << 30}"
                " error=2 @ " + " ".join(f"0x{a:x}" for a in weights),
            ),
            [
                Site(weights, 8, 32 * MiB, 12, 40 * MiB),
                Site([framework.at(0x4310), *main], 2, 4 * MiB, 2, 4 * MiB),
            ],
            mapped,
        ),
    }


def widgets_heap(binary: Path) -> str:
    """A run of `cxx_new 20000`: make_widgets keeps 20000 Widgets of 48 B and its vector's
    buffer, make_buffers 20000 arrays of 700 B and its vector's buffer, churn_strings
    frees all it allocates. The two buffers come from two instances of
    std::vector::reserve, one function in short names."""
    exe = Mapped(f"{THERE}/bin/cxx_new", 0x555555554000, binary)
    libc = Mapped(f"{THERE}/lib/libc.so.6", 0x7FFFF7D80000, size=0x1A0000)
    main = startup(exe, libc)
    widgets, buffers = exe.frame("_Z12make_widgetsi"), exe.frame("_Z12make_buffersi")
    reserve_widgets = exe.frame("_ZNSt6vectorIP6WidgetSaIS1_EE7reserveEm")
    reserve_buffers = exe.frame("_ZNSt6vectorIPcSaIS0_EE7reserveEm")
    n = 20000
    return heap_text(
        524288,
        header(4343, f"./cxx_new {n}", exe, "host", 1, "# dropped_samples: 0"),
        [
            Site([widgets, *main], n, n * 48, n, n * 48),
            Site([reserve_widgets, widgets, *main], 1, n * 8, 1, n * 8),
            Site([buffers, *main], n, n * 700, n, n * 700),
            Site([reserve_buffers, buffers, *main], 1, n * 8, 1, n * 8),
            Site([exe.frame("_Z13churn_stringsi"), *main], 0, 0, n, n * 900),
        ],
        [exe, libc],
    )


def python_heap(binary: Path) -> str:
    """A Python 3.11 program, the python executable played by sites (its functions
    called from Python, as an extension's) with libpython from THERE, whose evaluation
    loop the `# python:` line names. Leaf first, a group of Python frames just leafward
    of the loop's frame that ran them:

    - site_small called from Store.add (line 12) from <module> (app.py:3): 0.5 MiB;
    - pymalloc's objects from Store.add (line 14) from <module> (app.py:3): 3 MiB, so
      that Store.add is one row by function and two by line;
    - pymalloc's from keep_dicts, from load_catalog of shop/__init__.py (shown with
      its folder), from <module> (app.py:4): 8 MiB;
    - the interpreter's start-up, no Python frame (nothing folded): 1 MiB."""
    exe = Mapped(f"{THERE}/bin/python3.11", 0x555555554000, binary)
    libc = Mapped(f"{THERE}/lib/libc.so.6", 0x7FFFF7D80000, size=0x1A0000)
    libpython = Mapped(f"{THERE}/lib/libpython3.11.so.1.0", 0x7FFFF7400000, size=0x400000)
    frames = {  # id: (line, first line, name, file)
        1: (12, 10, "Store.add", "store.py"),
        2: (14, 10, "Store.add", "store.py"),
        3: (3, 1, "<module>", "app.py"),
        4: (4, 1, "<module>", "app.py"),
        5: (5, 3, "keep_dicts", "dicts.py"),
        6: (8, 6, "load_catalog", "shop/__init__.py"),
    }
    python = {i: FRAME_BASE + i for i in frames}
    run = [libpython.at(0x1B5A1E), libpython.at(0x26C7B0), *startup(exe, libc)]
    pymalloc = [libpython.at(0x11D0A3), libpython.at(0x1212F5)]
    return heap_text(
        524288,
        header(
            4444,
            "./python3.11 app.py",
            exe,
            "host",
            1,
            "# dropped_samples: 0",
            f"# python: 3.11.2 0x{libpython.at(0x1B2340):x}",
            *(
                f"# python_frame: 0x{python[i]:x} {line} {first} {name}\t{THERE}/app/{file}"
                for i, (line, first, name, file) in frames.items()
            ),
        ),
        [
            Site(
                [exe.frame("site_small"), libpython.at(0x13F2C1), python[1], python[3], *run],
                2048,
                MiB // 2,
                2048,
                MiB // 2,
            ),
            Site([*pymalloc, python[2], python[3], *run], 12288, 3 * MiB, 12288, 3 * MiB),
            Site([*pymalloc, python[5], python[6], python[4], *run], 8192, 8 * MiB, 9000, 9 * MiB),
            Site(
                [libpython.at(0x2A1F40), libpython.at(0x2A36D2), *startup(exe, libc)],
                64,
                MiB,
                64,
                MiB,
            ),
        ],
        [exe, libpython, libc],
    )


# The paths of this machine a report may print, and what the expected files have in
# their place: --lines names the source files of the fixtures, compiled from the checkout.
MACHINE_PATHS = {str(ROOT): "<checkout>"}


@pytest.mark.parametrize("case", CASES, ids=[case.expected for case in CASES])
def test_report_is_the_expected_one(case, heaps, monkeypatch):
    monkeypatch.chdir(heaps)
    done = CliRunner().invoke(cli, case.args.split(), catch_exceptions=False)
    assert done.exit_code == 0, done.stderr
    report = done.stdout_bytes
    for path, shown in MACHINE_PATHS.items():
        report = report.replace(path.encode(), shown.encode())
    assert str(heaps).encode() not in report
    compare(EXPECTED / case.expected, report, f"mem_parser {case.args}")


def compare(expected: Path, report: bytes, command: str) -> None:
    """Fail with a unified diff unless `report` is the content of `expected`; rewrite
    the file instead with MEMPROF_UPDATE_EXPECTED=1."""
    if UPDATE:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_bytes(report)
        return
    old = expected.read_bytes() if expected.is_file() else b""
    if report == old:
        return
    diff = difflib.unified_diff(
        old.decode("utf-8", "surrogateescape").splitlines(keepends=True),
        report.decode("utf-8", "surrogateescape").splitlines(keepends=True),
        f"{expected.relative_to(ROOT)} (expected)",
        f"{command} (printed)",
    )
    pytest.fail(
        f"{command} printed something else than {expected.relative_to(ROOT)}"
        " (MEMPROF_UPDATE_EXPECTED=1 rewrites the file if the change is meant):\n" + "".join(diff),
        pytrace=False,
    )


def test_every_expected_file_is_a_case():
    """No expected file is left behind when a case is renamed or removed (a case whose
    file is missing fails on its own)."""
    stale = {p.name for p in EXPECTED.iterdir()} - {c.expected for c in CASES}
    assert not stale, f"no case compares with {sorted(stale)} in {EXPECTED.relative_to(ROOT)}"
