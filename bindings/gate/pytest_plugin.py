"""pytest plugin (entry point pytest11): memory budgets for tests.

    @pytest.mark.memory_budget(peak="64 MiB", leaks="1 MiB", heap="host")
    def test_load(): ...

Around each test with a budget (marked, or every test with --memory-budget-default), a
capture window with live tracking records every allocation of the test's call (rate 1
unless the marker gives `rate`); the test fails when the window's peak exceeds `peak`, or
when one stack still holds more than `leaks` at the end of the test. pytest must run
with the sampler loaded and idle: `mem_profiler run --idle -- pytest ...`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mem_profiler import api
from mem_profiler.core.errors import BudgetError
from mem_profiler.gate.budgets import Budget, size_budget
from mem_profiler.gate.kinds import LEAK_PER_STACK, PEAK

MARKER = "memory_budget"
_KINDS = {"peak": PEAK, "leaks": LEAK_PER_STACK}
_RUN_IDLE = (
    "run pytest under the sampler, idle: `mem_profiler run --idle -- pytest ...` "
    "(or LD_PRELOAD=$(mem_profiler lib) pytest ...)"
)
_FOLDER = pytest.StashKey[Path]()
_PLAN = pytest.StashKey["_Plan"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("memory budgets").addoption(
        "--memory-budget-default",
        metavar="peak=SIZE,leaks=SIZE",
        help="Budgets for every test (a memory_budget marker overrides them key by key); "
        "SIZE in bytes or with KiB/MiB/GiB, KB/MB/GB.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(peak=None, leaks=None, heap='host', rate=1): fail the test if "
        "its peak of live bytes exceeds `peak`, or if one call stack still holds more than "
        "`leaks` when it ends (mem_profiler).",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reads every test's budgets and checks, once before any test runs, that they can be
    measured."""
    try:
        for item in items:
            plan = _plan(item)
            if plan is not None:
                item.stash[_PLAN] = plan
    except BudgetError as e:
        raise pytest.UsageError(f"memory budget: {e}") from None
    if not any(_PLAN in item.stash for item in items):
        return
    if not api.sampler_loaded():
        raise pytest.UsageError(
            f"memory budgets need the mem_profiler sampler in the pytest process: {_RUN_IDLE}"
        )
    if api.is_capturing():
        raise pytest.UsageError(
            "a mem_profiler capture window is already open in the pytest "
            f"process, so tests cannot have windows of their own: {_RUN_IDLE}"
        )
    config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="memory_budget_"))


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_FOLDER, None)
    if folder is not None and not any(folder.iterdir()):
        folder.rmdir()


@dataclass
class _Plan:
    budgets: list[Budget]
    rate: int


def _plan(item: pytest.Item) -> _Plan | None:
    """The test's budgets (its marker's over --memory-budget-default, key by key), or None
    when it has none. BudgetError for a bad marker or option."""
    settings: dict[str, object] = _parse_default(item.config.getoption("memory_budget_default"))
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        unknown = set(marker.kwargs) - {*_KINDS, "heap", "rate"}
        if marker.args or unknown:
            raise BudgetError(
                f"{item.nodeid}: {MARKER} takes the keyword arguments peak, leaks, heap and rate"
            )
        settings.update(marker.kwargs)
    heap = str(settings.get("heap", "host"))
    budgets = [
        size_budget(kind, settings[key], heap)
        for key, kind in _KINDS.items()
        if settings.get(key) is not None
    ]
    rate = settings.get("rate", 1)
    if not isinstance(rate, int) or rate < 1:
        raise BudgetError(f"{item.nodeid}: {MARKER} rate must be a whole number of bytes >= 1")
    return _Plan(budgets, rate) if budgets else None


def _parse_default(text: str | None) -> dict[str, object]:
    settings: dict[str, object] = {}
    for part in filter(None, (text or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in _KINDS:
            raise BudgetError(
                f"bad --memory-budget-default {text!r}: expected peak=SIZE,leaks=SIZE"
            )
        settings[key.strip()] = value.strip()
    return settings


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    plan = item.stash.get(_PLAN, None)
    if plan is None:
        return (yield)
    # Imported here, not at the top: every pytest run in this environment loads the plugin.
    from mem_profiler.gate.check import check_budgets
    from mem_profiler.gate.report import format_result
    from mem_profiler.parser.read.heap_file import read_heap

    cap = None
    try:
        with api.capture(rate=plan.rate, output=f"{item.config.stash[_FOLDER]}/") as cap:
            outcome = yield
        profiles = {heap: read_heap(path) for heap, path in cap.files.items()}
        exceeded = [r for r in check_budgets(plan.budgets, profiles) if r.exceeded]
    except BudgetError as e:  # a partial profile: kept, for a look at it
        pytest.fail(f"memory budget not judged: {e}", pytrace=False)
    except BaseException:
        _remove(cap)
        raise
    if not exceeded:
        _remove(cap)
        return outcome
    pytest.fail(
        "memory budget exceeded:\n"
        + "\n".join(map(format_result, exceeded))
        + f"\nprofile: {', '.join(map(str, cap.files.values()))}",
        pytrace=False,
    )


def _remove(cap: api.Capture | None) -> None:
    for path in cap.files.values() if cap is not None else ():
        path.unlink(missing_ok=True)
