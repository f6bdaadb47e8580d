"""The pytest plugin: an inner test suite (pytester) whose pytest runs with the real
sampler preloaded, idle; its tests allocate through ctypes."""

from __future__ import annotations

import pytest
from support.paths import LIBMEMPROF

from mem_profiler.parser.elf.symcache import cache_dir

pytest_plugins = ["pytester"]
SYMBOL_CACHE = cache_dir()  # the user's, before pytester gives tests a HOME of their own

SUITE = """
import ctypes
import pytest

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
kept = []


@pytest.mark.memory_budget(peak="64 MiB", leaks="1 MiB")
def test_leaks_a_buffer():
    kept.append(libc.malloc(3 << 20))


@pytest.mark.memory_budget(peak="64 MiB", leaks="1 MiB")
def test_frees_what_it_takes():
    libc.free(libc.malloc(32 << 20))


@pytest.mark.memory_budget(peak="16 MiB")
def test_peaks_too_high():
    libc.free(libc.malloc(24 << 20))


def test_without_budget():
    kept.append(libc.malloc(8 << 20))
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for key in ("MEMPROF_CAPTURE", "MEMPROF_PARENT_PID", "MEMPROF_PREFIX"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LD_PRELOAD", str(LIBMEMPROF))  # for the inner pytest only
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(SYMBOL_CACHE))  # keep symbolization warm
    # the profiles of budgets exceeded, kept for the user, go here rather than to /tmp
    (pytester.path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(pytester.path / "tmp"))
    pytester.makepyfile(test_inner=SUITE)
    return pytester


def assert_usage_error(inner: pytest.Pytester, message: str, *args: str) -> None:
    """The inner pytest (with ARGS) stops with a usage error, saying MESSAGE (a pattern)
    on stderr."""
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_leaking_test_fails_with_its_budget_message(inner):
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaks_a_buffer _*",
            "memory budget exceeded:",
            # what the line keeps: the buffer, the int ctypes returns for it (32 B) and
            # the four slots `kept` takes at its first append (32 B)
            "FAIL host max-leak-per-stack 3,145,792 B (3.00 MiB)"
            " > limit 1,048,576 B (1.00 MiB), exact",
            "     stacks holding the most at exit:",
            # the test's own line that leaked, first: a stack with Python frames shows those
            "*3,145,792 B  test_leaks_a_buffer (test_inner.py:12) < *",
            "profile: *.heap",
            "*_ test_peaks_too_high _*",
            "memory budget exceeded:",
            "FAIL host max-peak 25,16?,??? B (24.0? MiB) > limit 16,777,216 B (16.00 MiB), exact",
        ]
    )
    assert "test_frees_what_it_takes FAILED" not in result.stdout.str()


# Python objects kept by a helper the test calls; the truth is sys.getsizeof's, written
# where the outer test reads it.
PYTHON_SUITE = """
import sys
import pytest

kept = []


def build_index(n):
    return [bytearray(3000) for _ in range(n)]


@pytest.mark.memory_budget(leaks="1 MiB")
def test_keeps_an_index():
    index = build_index(1000)
    kept.append(index)
    with open("truth.txt", "w") as f:
        f.write(str(sum(map(sys.getsizeof, index)) + sys.getsizeof(index)))
"""


def test_a_python_tests_message_names_its_functions(inner):
    """The failure names the test and the helper that allocated, as `function (file:line)`,
    with the bytes the objects take (pymalloc's included)."""
    inner.makepyfile(test_python=PYTHON_SUITE)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "test_python.py")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    first = text.split("stacks holding the most at exit:\n", 1)[1].splitlines()[0]
    measured = float(first.split()[0].replace(",", ""))
    truth = int((inner.path / "truth.txt").read_text())
    # exact mode: every block, the bytearray objects pymalloc serves (1.8%) included;
    # getsizeof and the allocator's requests differ by a header's few bytes at most
    assert measured == pytest.approx(truth, rel=0.001)
    source = PYTHON_SUITE.strip().splitlines()  # as makepyfile writes it
    build, call = (
        next(i for i, line in enumerate(source, 1) if line.strip().startswith(text))
        for text in ("return [bytearray", "index = build_index")
    )
    assert (
        f"build_index (test_python.py:{build}) < test_keeps_an_index (test_python.py:{call})"
        in first
    ), first


def test_default_budget_applies_to_unmarked_tests(inner):
    result = inner.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--memory-budget-default",
        "leaks=4MiB",
        "-k",
        "without_budget or frees",
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_without_budget - *", "*1 passed*"])


def test_without_the_sampler_the_plugin_says_how_to_run(inner, monkeypatch):
    monkeypatch.delenv("LD_PRELOAD")
    assert_usage_error(
        inner,
        "ERROR: memory budgets need the mem_profiler sampler in the pytest process: run pytest "
        "under the sampler, idle: `mem_profiler run --idle -- pytest ...` "
        "(or LD_PRELOAD=$(mem_profiler lib) pytest ...)",
    )


def test_an_open_outer_window_is_refused(inner, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMPROF_CAPTURE", "1")
    monkeypatch.setenv("MEMPROF_PREFIX", f"{tmp_path}/outer_")
    assert_usage_error(
        inner,
        "ERROR: a mem_profiler capture window is already open in the "
        "pytest process, so tests cannot have windows of their own: "
        "run pytest under the sampler, idle: *",
    )


def test_bad_budget_is_a_usage_error(inner):
    inner.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.memory_budget(peak="lots")
        def test_x():
            pass
    """
    )
    assert_usage_error(inner, "ERROR: memory budget: bad size 'lots': *", "test_bad.py")
