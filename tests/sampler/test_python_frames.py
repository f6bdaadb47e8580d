"""Python frames in sampled stacks (issue 14; ARCHITECTURE.md, "Python programs"): the
fixture tests/fixtures/python_sites.py keeps known amounts in its own functions, counted
by tracemalloc in the same interpreter, on every CPython 3.9-3.13 this machine has."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.chromium import chromium
from support.interpreters import DEBIAN_PYTHON, VENV_PYTHON, interpreters
from support.jeprof import jeprof_text, to_jeprof
from support.paths import FIXTURES, MEM_PARSER, MEM_PROFILER
from support.png import png_pixels
from support.profiling import profile_run, run_parser
from support.python_sites import LIMITS, function_totals, line_totals, size_options, truth_sd
from support.reports import PRINTED_MB, MiB, graph_cums, text_rows
from support.sampling_math import assert_estimate

from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.symbols.code_mappings import code_mappings
from mem_profiler.parser.symbols.python_frames import is_python_frame
from mem_profiler.parser.symbols.symbolize import symbolize

SITES = FIXTURES / "python_sites.py"
CODE_REUSE = FIXTURES / "python_code_reuse.py"
MANY_LINES = FIXTURES / "python_many_lines.py"
# More lines than the 2^16 the sampler's table of Python lines holds at --stack-memory 4
# (its least, as it held at every size before it grew with the stacks' room).
LINES, LEAST_ROOM = 70_000, 1 << 16

# numpy's allocator (its default data memory handler) and CPython's, as functions
PYTHON_ALLOCATORS = re.compile(
    r"\b(?:default_(?:malloc|calloc)|PyDataMem_\w+|_?Py(?:Mem|Object)_\w*(?:Malloc|Calloc))\b"
)

_runs: dict[tuple, tuple[dict, Path]] = {}


def run_sites(
    tmp_path_factory,
    python: str | Path,
    rate: int,
    *extra: str,
) -> tuple[dict, Path]:
    """The fixture's report (truth, site lines) and its dump, once per interpreter,
    rate and options."""
    key = (str(python), rate, extra)
    if key not in _runs:
        out = tmp_path_factory.mktemp("python_sites")
        env = {**os.environ, "PYTHONMALLOC": "malloc"}
        proc, _ = profile_run(
            [python, SITES, out / "report.json", *extra, *size_options(rate)],
            out / "p_",
            rate,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads((out / "report.json").read_text())
        _runs[key] = report, Path(report["heap"])
    return _runs[key]


# The interpreter's own start-up functions and the import system's file, none of which
# the default pictures of a Python program show (python_frames.START_UP_FRAME)
START_UP_NATIVE = (
    "Py_InitializeFromConfig",
    "pymain_init",
    "_PyRuntime_Initialize",
    "_Py_PreInitializeFromPyArgv",
)
INTERPRETER_NATIVE = re.compile(r"^(?:_?Py|pymain_|pyinit_|_start$|__libc_|main$)")


PYTHON_FRAME = re.compile(r".+ \((?:<frozen [^>]+>|[^()]+\.py)\)$")


def collapsed_stacks(text: str) -> list[tuple[list[str], float]]:
    """(frames, weight) of each of --collapsed's lines."""
    return [
        (stack.split(";"), float(w)) for stack, w in (ln.rsplit(" ", 1) for ln in text.splitlines())
    ]


def is_start_up(frames: list[str]) -> bool:
    """Whether --native's stack is the interpreter's start-up: under one of its functions,
    or under the program's main with no Python frame."""
    return any(f in START_UP_NATIVE for f in frames) or (
        "Py_BytesMain" in frames and not any(PYTHON_FRAME.match(f) for f in frames)
    )


def assert_fits_a_window(svg: str, tmp_path: Path) -> None:
    """The call graph, drawn by Chromium in a window smaller than dot's drawing, is shown
    whole: what it draws on the page has the drawing's proportions, inside the window."""
    m = re.search(r'viewBox="[\d.]+ [\d.]+ ([\d.]+) ([\d.]+)"', svg)
    assert m is not None
    width, height = float(m[1]), float(m[2])
    window = (min(1000, int(width * 0.6)), min(700, int(height * 0.6)))
    page, png = tmp_path / "graph.svg", tmp_path / "graph.png"
    page.write_text(svg)
    chromium(
        f"--screenshot={png}",
        f"--window-size={window[0]},{window[1]}",
        page.as_uri(),
        profile_dir=tmp_path / "profile",
    )
    drawn = np.argwhere(np.any(png_pixels(png)[:, :, :3] < 250, axis=2))
    (top, left), (bottom, right) = drawn.min(axis=0), drawn.max(axis=0)
    shown = (right - left + 1) / (bottom - top + 1)
    assert shown == pytest.approx(width / height, rel=0.05), (window, (top, left, bottom, right))


def test_pictures_show_the_program_with_its_start_up_as_one_frame(tmp_path_factory, tmp_path):
    """The call graph and the flame graph of a Python program: its functions first, the
    interpreter's start-up one frame holding exactly what --native shows under the
    start-up's functions, no import system's frame; --native keeps them all. On Debian's
    python3, stripped, as it ships (its static functions unnamed)."""
    report, heap = run_sites(tmp_path_factory, DEBIAN_PYTHON, 1024)
    native = collapsed_stacks(run_parser("-f", heap, "--collapsed", "--native").stdout)
    under = [w for frames, w in native if is_start_up(frames)]
    start_up = sum(under)
    assert start_up > 0 and any("Py_InitializeFromConfig" in frames for frames, _ in native)

    folded = collapsed_stacks(run_parser("-f", heap, "--collapsed").stdout)
    ((one, folded_start_up),) = [(f, w) for f, w in folded if "[Python start-up]" in f]
    assert one == ["[Python start-up]"]
    # each line's weight is printed rounded to a byte
    assert folded_start_up == pytest.approx(start_up, abs=len(under) / 2 + 1)
    frames = [f for stack, _ in folded for f in stack]
    assert not [f for f in frames if "<frozen importlib._bootstrap" in f or f in START_UP_NATIVE]

    graph = run_parser("-f", heap, "-s").stdout
    cums = graph_cums(graph)
    order = sorted(cums, key=lambda name: cums[name], reverse=True)
    assert order[0] == "<module> (python_sites.py)"
    shown = [f"{name} (python_sites.py)" for name in report["lines"]]
    assert set(shown) <= set(order)
    assert [n for n in order if INTERPRETER_NATIVE.match(n)] == []
    assert cums["[Python start-up]"] == pytest.approx(start_up, abs=PRINTED_MB)
    assert_fits_a_window(graph, tmp_path)

    flame = tmp_path / "flame.html"
    run_parser("-f", heap, "--flame", flame)
    page = re.search(r'id="data">(.*?)</script>', flame.read_text(), re.S)
    assert page is not None
    data = json.loads(page[1])
    names = [data["names"][i] for i in data["name"]]
    (at,) = [i for i, name in enumerate(names) if name == "[Python start-up]"]
    assert data["parent"][at] == -1 and at not in data["parent"]
    assert not [
        n for n in names if INTERPRETER_NATIVE.match(n) or "<frozen importlib._bootstrap" in n
    ]
    roots = sorted((v, names[i]) for i, v in enumerate(data["value"]) if data["parent"][i] < 0)
    assert roots[-1][1] == "<module> (python_sites.py)"


@pytest.mark.parametrize("rate", [1, 1024])
@pytest.mark.parametrize("python", interpreters())
def test_each_function_keeps_what_tracemalloc_counts(tmp_path_factory, python, rate):
    report, heap = run_sites(tmp_path_factory, python, rate)
    profile = read_heap(heap)
    assert (
        profile.meta["python"]
        .split()[0]
        .startswith(
            subprocess.run(
                [python, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    )
    ours = function_totals(symbolize(profile, profile.exe))
    for name, sizes in report["sizes"].items():
        truth, sd = truth_sd(sizes, rate)
        assert name in ours, f"{name} is in no stack"
        assert_estimate(ours[name], truth, sd, LIMITS[rate])


@pytest.mark.parametrize("rate", [1, 1024])
@pytest.mark.parametrize("python", interpreters())
def test_each_line_of_a_function_keeps_what_tracemalloc_counts(tmp_path_factory, python, rate):
    """keep_by_line allocates on three lines in turn, and again from the first: each
    sample's line is decoded from where the last one of the same code stopped, or from
    the table's start when the unit is before it."""
    report, heap = run_sites(tmp_path_factory, python, rate)
    ours = line_totals(symbolize(read_heap(heap), None), "keep_by_line")
    truths = {int(line): sizes for line, sizes in report["by_line"].items()}
    assert len(truths) == 3
    for line, sizes in truths.items():
        truth, sd = truth_sd(sizes, rate)
        assert_estimate(ours.get(line, 0.0), truth, sd, LIMITS[rate])
    # what the interpreter keeps from the loop's own line (3.9: a few bytes) is all else
    others = sum(value for line, value in ours.items() if line not in truths)
    assert others <= 1e-3 * sum(ours.values()), ours


def test_thread_stacks_hold_the_threads_python_frames(tmp_path_factory):
    report, heap = run_sites(tmp_path_factory, str(VENV_PYTHON), 1024)
    profile = read_heap(heap)
    sym = symbolize(profile, profile.exe)
    names, node_of = sym.node_names(lines=True)
    line = report["lines"]["keep_in_thread"]
    stacks = [
        [names[n] for n in node_of[sym.frames[sym.offsets[i] : sym.offsets[i + 1]]]]
        for i in range(len(sym.offsets) - 1)
    ]
    threaded = [s for s in stacks if f"keep_in_thread (python_sites.py:{line})" in s]
    assert threaded
    # the thread's own Python frames down to its start, none of the main thread's
    assert all(any(n.startswith("Thread.run (threading.py:") for n in s) for s in threaded)
    assert not any(n.startswith("main (python_sites.py:") for s in threaded for n in s)


def test_text_report_names_python_functions_and_lines(tmp_path_factory):
    report, heap = run_sites(tmp_path_factory, str(VENV_PYTHON), 1024)
    text = run_parser("-f", heap, "-t").stdout
    for name in report["lines"]:
        assert f"{name} (python_sites.py)" in text
    assert "(python_sites.py:" not in text
    with_lines = run_parser("-f", heap, "-t", "--lines").stdout
    for name, line in report["lines"].items():
        assert f"{name} (python_sites.py:{line})" in with_lines
    assert "(python_sites.py)" not in with_lines
    # the default view folds the interpreter's frames; --native shows them
    native = run_parser("-f", heap, "--collapsed", "--native").stdout
    folded = run_parser("-f", heap, "--collapsed").stdout
    assert "_PyEval_EvalFrameDefault" in native
    python = [line for line in folded.splitlines() if "(python_sites.py)" in line]
    assert python and not any("_PyEval_EvalFrameDefault" in line for line in python)
    assert any("keep_dicts (python_sites.py)" in line for line in python)


def test_numpy_called_from_python_has_both_kinds_of_frame(tmp_path_factory):
    pytest.importorskip("numpy")
    report, heap = run_sites(tmp_path_factory, str(VENV_PYTHON), 1024, "--numpy")
    profile = read_heap(heap)
    sym = symbolize(profile, profile.exe, native=True)
    maps = code_mappings(profile)
    numpy_paths = {m.path for m in maps if "/numpy/" in m.path}
    line = report["lines"]["keep_arrays"]
    names, node_of = sym.node_names(lines=True)

    def in_numpy(address: int) -> bool:
        return any(m.start <= address < m.end for m in maps if m.path in numpy_paths)

    both = 0
    for i in range(len(sym.offsets) - 1):
        frames = sym.frames[sym.offsets[i] : sym.offsets[i + 1]]
        shown = [names[n] for n in node_of[frames]]
        if f"keep_arrays (python_sites.py:{line})" in shown:
            addrs = sym.addrs[frames]
            both += any(in_numpy(int(a)) for a in addrs[~is_python_frame(addrs)])
    assert both, "no stack holds numpy's native frames under keep_arrays"
    # the array objects tracemalloc counts, and their data, which numpy allocates itself
    # (with a few small blocks of its own beside: the bound, not the 5 sd one)
    truth = truth_sd(report["sizes"]["keep_arrays"], 1024)[0] + 100 * 5000 * 8
    assert function_totals(sym)["keep_arrays"] == pytest.approx(truth, rel=LIMITS[1024])
    # by default a stack with Python frames shows those alone: what numpy's C code
    # allocates is the flat of the Python function that called it, numpy's own `ones`
    _, rows = text_rows(run_parser("-f", heap, "-t", "--nodecount", "100000").stdout)
    for printed in (rows["ones (numeric.py)"][0], rows["keep_arrays (python_sites.py)"][2]):
        assert float(printed) * MiB == pytest.approx(truth, rel=LIMITS[1024], abs=PRINTED_MB)
    assert not [name for name in rows if "PyArray" in name or "npy_" in name], rows
    # numpy's data memory handler and CPython's allocators are cut as malloc is, in the
    # Python view and with every frame: no row is the allocator's
    for view in ((), ("--native",)):
        text = run_parser("-f", heap, "-t", "--nodecount", "100000", *view).stdout
        assert not PYTHON_ALLOCATORS.findall(text), (view, PYTHON_ALLOCATORS.findall(text))


def test_pprof_gives_python_functions_their_file_and_lines(tmp_path_factory, tmp_path):
    report, heap = run_sites(tmp_path_factory, str(VENV_PYTHON), 1024)
    out = tmp_path / "p.pb.gz"
    subprocess.run(
        [str(MEM_PARSER), "-f", str(heap), "--pprof", str(out)], capture_output=True, check=True
    )
    data = gzip.decompress(out.read_bytes())
    # the function's own name and file in the string table, not the label
    assert b"keep_dicts" in data
    assert report["file"].encode() in data
    assert b"keep_dicts (python_sites.py" not in data


def test_jeprof_reads_a_python_profile(tmp_path_factory, tmp_path):
    report, heap = run_sites(tmp_path_factory, str(VENV_PYTHON), 1024)
    # jeprof reads heap_v2 only; the Python frames' lines come along, and jeprof skips them
    text = to_jeprof(heap, tmp_path / "python.heap_v2")
    profile = read_heap(text)
    assert profile.python_frames and profile.exe is not None
    jeprof_total, _ = jeprof_text(profile.exe, text, "inuse_space")
    ours = symbolize(profile, profile.exe).value("inuse_space").sum()
    assert jeprof_total == pytest.approx(ours / 2**20, rel=0.01)


@pytest.mark.parametrize("python", interpreters())
def test_a_code_objects_reused_address_never_names_another_function(tmp_path, python):
    """The frame cache (by code object and instruction) checks a hit against what the
    code object holds now: each function made and dropped in a loop is named, with the
    line of its allocation, in the stacks of exactly the blocks it kept."""
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    proc, _ = profile_run(
        [python, CODE_REUSE, tmp_path / "report.json"], tmp_path / "p_", 1, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reused"], "no code object took a freed one's address: nothing was tested"
    profile = read_heap(report["heap"])
    sym = symbolize(profile, profile.exe)
    objects, space = sym.value("inuse_objects"), sym.value("inuse_space")
    found: dict[str, list] = {}
    for i in range(len(sym.offsets) - 1):
        addrs = sym.addrs[sym.frames[sym.offsets[i] : sym.offsets[i + 1]]].tolist()
        innermost = next(
            (profile.python_frames[a] for a in addrs if a in profile.python_frames), None
        )
        # the kept blocks, of 2000 bytes and more; not the small ones exec makes and frees
        if (
            innermost is None
            or innermost.file != "<reused>"
            or not objects[i]
            or space[i] < 2000 * objects[i]
        ):
            continue
        totals = found.setdefault(f"{innermost.name}:{innermost.line}", [0, 0])
        totals[0] += round(objects[i])
        totals[1] += round(space[i])
    assert found == report["expected"]


NO_LINES = """\
def nolines():
    kept = []
    for _ in range(64):
        kept.append(bytearray(1 << 20))
    return kept


code = nolines.__code__
units, table = len(code.co_code) // 2, bytearray()
while units:  # every instruction without a line: code 15 of 3.11's location table
    table.append(0x80 | 15 << 3 | min(8, units) - 1)
    units -= min(8, units)
nolines.__code__ = code.replace(co_linetable=bytes(table))
kept = nolines()
"""


@pytest.mark.parametrize(
    "python", [p for p in interpreters() if p.id.endswith(("3.11", "3.12", "3.13"))]
)
def test_an_instruction_without_a_line_is_on_the_functions_first(python, tmp_path):
    script = tmp_path / "nolines.py"
    script.write_text(NO_LINES)
    proc, (heap,) = profile_run([python, script], tmp_path / "p_", 1, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = run_parser("-f", heap, "-t", "--lines", "--alloc_space").stdout
    assert "nolines (nolines.py:1)" in text and ":-1)" not in text, text


def test_categories_by_rules_of_ones_own(tmp_path_factory, tmp_path):
    """mem_parser --category-rules: a stack's memory goes to the category of the first
    rule its innermost matching Python frame meets; the rest is `other`. With a rule per
    site, each category holds what its function's stacks hold; a bad rule is one
    sentence and exit 2."""
    _, heap = run_sites(tmp_path_factory, sys.executable, 1024)
    rules = tmp_path / "rules.txt"
    rules.write_text(
        "# category  file  function\n"
        "dicts   python_sites\\.py$  keep_dicts\n"
        "strings python_sites\\.py$  keep_strings\n"
    )
    out = subprocess.run(
        [MEM_PARSER, "-f", heap, "--category-rules", rules, "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {row["name"]: row["flat"] for row in json.loads(out)["rows"]}
    totals = function_totals(symbolize(read_heap(heap), read_heap(heap).exe))
    assert rows["dicts"] == pytest.approx(totals["keep_dicts"])
    assert rows["strings"] == pytest.approx(totals["keep_strings"])
    assert sum(rows.values()) == pytest.approx(json.loads(out)["total"])
    rules.write_text("dicts python_sites.py\n")
    bad = subprocess.run(
        [MEM_PARSER, "-f", heap, "--category-rules", rules, "-t"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{rules}:1: expected 'CATEGORY FILE_REGEX FUNCTION_REGEX'" in bad.stderr


def run_many_lines(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    """python_many_lines.py under Debian's python3 at -c 1: keeper's bytes, its dump."""
    proc, (heap,) = profile_run(
        [DEBIAN_PYTHON, MANY_LINES, LINES], tmp_path / "m_", 1, *extra, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split("kept_bytes=")[1]), heap


def test_a_program_of_many_python_lines_keeps_its_frames(tmp_path):
    """Every allocation recorded in a program that runs more distinct lines than the
    Python tables held before they grew with --stack-memory: the function that keeps the
    memory is still named, with its bytes."""
    kept, heap = run_many_lines(tmp_path)
    report = json.loads(run_parser("-f", heap, "--json").stdout)
    cum = {row["name"]: row["cum"] for row in report["rows"]}
    assert cum.get("keeper (python_many_lines.py)") == kept, report["rows"][:10]
    assert report["python_frames_left_out"] == 0


def test_python_frames_left_out_are_said_and_refuse_a_category_budget(tmp_path):
    """With the tables at their least the lines past them lose their frames: a category
    budget, which Python frames decide, is not judged (exit 2), and the report of the
    profile the gate saved says how many in one sentence."""
    gate = subprocess.run(
        [MEM_PROFILER, "gate", "--stack-memory", "4", "--allow-dropped", "--save-profiles",
         tmp_path, "--max-category", "host:other=1GiB", "--", DEBIAN_PYTHON, MANY_LINES,
         str(LINES)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert gate.returncode == 2, gate.stderr
    assert "host max-category other 1.00 GiB cannot be judged: Left out " in gate.stderr
    heap = tmp_path / f"{DEBIAN_PYTHON.name}.heap"
    left_out = read_heap(heap).python_frames_left_out
    assert left_out >= LINES - LEAST_ROOM
    text = run_parser("-f", heap, "-t").stdout
    assert f"Left out {left_out:,} Python frames of stacks" in text
