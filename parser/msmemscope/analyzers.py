"""Offline analyses of a capture made with --mode log, with the API msMemScope's users know:

    from mem_profiler.parser.msmemscope import analyzers
    analyzers.list_analyzers()  # ['leaks', 'window_leaks', 'peak', 'timeline', 'compare',
    #                              'export', 'inefficient']
    analyzers.get_analyzer_config("leaks")    # its parameters
    analyzers.check_leaks("/tmp/x_4242.0001.heap", mstx_info="step start", start_index=0)
    analyzers.analyze("leaks", input_path=..., mstx_info="step start", start_index=0)

`input_path` is the capture's .heap file (or one of its .memlog files). As in msMemScope,
the leak checks print their report; they also return it (a list of Leak, largest first)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mem_profiler.core.errors import UserError
from mem_profiler.parser import log_pipeline, pipeline
from mem_profiler.parser.common.atomic import atomic_open
from mem_profiler.parser.log import analysis
from mem_profiler.parser.log.analysis import Leak, LeakSet, Peak, WindowLog
from mem_profiler.parser.log.device_uses import (
    IDLE_THRESHOLD,
    Inefficiency,
    check_kinds,
    inefficient,
)
from mem_profiler.parser.model.aggregate import FlatCum, aggregate
from mem_profiler.parser.report.inefficient import format_inefficient
from mem_profiler.parser.report.leaks import format_leaks
from mem_profiler.parser.report.request import Request
from mem_profiler.parser.report.text import format_text
from mem_profiler.parser.report.timeline import format_timeline

PathLike = str | os.PathLike[str]
_INPUT = "the capture's .heap file (or one of its .memlog files)"
_BINARY = "the program that ran, to name frames [default: the .heap's exe]"
_HEAP = "host, cuda, cuda_host, acl, acl_host, hal or cuda_segments [default: the .heap's heap]"


def check_leaks(
    input_path: PathLike,
    mstx_info: str,
    start_index: int,
    *,
    binary: PathLike | None = None,
    heap: str | None = None,
) -> list[Leak]:
    """msMemScope's leak check: allocations made between occurrence `start_index` and the
    next occurrence of the mark `mstx_info` (from 0) and not freed by it. Prints the report
    and returns its rows."""
    cap = _open(input_path, heap)
    return _report(cap, analysis.mark_range_leaks(cap, mstx_info, start_index), binary)


def window_leaks(
    input_path: PathLike, *, binary: PathLike | None = None, heap: str | None = None
) -> list[Leak]:
    """Sampled allocations still live at the end of the window, by stack. Prints the report
    and returns its rows."""
    cap = _open(input_path, heap)
    return _report(cap, analysis.window_leaks(cap), binary)


def peak(input_path: PathLike, *, heap: str | None = None) -> Peak:
    """When the heap's estimated live bytes peaked, and how high."""
    return analysis.peak(_open(input_path, heap))


def timeline(input_path: PathLike, output: PathLike, *, program: str | None = None) -> str:
    """Write the capture's memory over time as SVG to `output`; returns its path."""
    with atomic_open(output) as f:
        f.write(format_timeline(_open(input_path, None), program))
    return os.fspath(output)


def compare_steps(
    input_path: PathLike,
    step: int,
    base_step: int,
    *,
    step_mark: str | None = None,
    binary: PathLike | None = None,
    heap: str | None = None,
) -> FlatCum:
    """msMemScope's step compare: what step `step` allocated and still held at its end,
    less what `base_step` did, by function (steps as mem_parser's --compare-steps counts
    them, by `step_mark`'s occurrences where given). Prints the table and returns it."""
    cap = _open(input_path, heap)
    new, old = (analysis.step(cap.log, n, step_mark) for n in (step, base_step))
    request = Request(binary=_program(cap, binary), base_profile=analysis.kept_by_step(cap, old))
    sym = pipeline.load(request, analysis.kept_by_step(cap, new))
    for message in sym.warnings:
        warnings.warn(message, stacklevel=2)
    table = aggregate(sym, request.index)
    print(format_text(table, None, []), end="")
    return table


def export_events(
    input_path: PathLike,
    output: PathLike,
    *,
    data_format: str = "csv",
    binary: PathLike | None = None,
) -> str:
    """msMemScope's --data-format: every event of the capture as a row of a CSV file
    (`csv`) or an SQLite database (`db`), written to `output`; returns its path."""
    if data_format not in ("csv", "db"):
        raise UserError(f"data_format {data_format!r}: one of csv, db.")
    path = os.fspath(output)
    log_pipeline.write_event_tables(
        _open(input_path, None),
        lambda message: warnings.warn(message.removeprefix("warning: "), stacklevel=3),
        csv_path=path if data_format == "csv" else None,
        db_path=path if data_format == "db" else None,
        program=None if binary is None else os.fspath(binary),
    )
    return path


def check_inefficient(
    input_path: PathLike,
    mem_size: int = 0,
    inefficient_type: list[str] | None = None,
    idle_threshold: int = IDLE_THRESHOLD,
    *,
    binary: PathLike | None = None,
) -> Inefficiency:
    """msMemScope's check_inefficient: device blocks allocated early, freed late or idle
    for more than `idle_threshold` launches between uses (`inefficient_type`: some of
    early_allocation, late_deallocation, temporary_idleness; all by default), leaving out
    blocks under `mem_size` bytes. Prints the report and returns it."""
    cap = _open(input_path, None)
    result = inefficient(cap, check_kinds(inefficient_type), mem_size, idle_threshold)
    request = Request(binary=None if binary is None else os.fspath(binary))
    for message in log_pipeline.name_findings(result, cap, request):
        warnings.warn(message, stacklevel=2)
    print(format_inefficient(result), end="")
    return result


@dataclass(frozen=True)
class _Param:
    required: bool
    description: str


_ANALYZERS: dict[str, tuple[Callable[..., Any], dict[str, _Param]]] = {
    "leaks": (
        check_leaks,
        {
            "input_path": _Param(True, _INPUT),
            "mstx_info": _Param(True, "the text of the mark that delimits the ranges"),
            "start_index": _Param(True, "the occurrence of the mark the range starts at, from 0"),
            "binary": _Param(False, _BINARY),
            "heap": _Param(False, _HEAP),
        },
    ),
    "window_leaks": (
        window_leaks,
        {
            "input_path": _Param(True, _INPUT),
            "binary": _Param(False, _BINARY),
            "heap": _Param(False, _HEAP),
        },
    ),
    "peak": (peak, {"input_path": _Param(True, _INPUT), "heap": _Param(False, _HEAP)}),
    "timeline": (
        timeline,
        {
            "input_path": _Param(True, _INPUT),
            "output": _Param(True, "the SVG file to write"),
            "program": _Param(False, "the program's name in the title [default: the .heap's exe]"),
        },
    ),
    "compare": (
        compare_steps,
        {
            "input_path": _Param(True, _INPUT),
            "step": _Param(True, "the step whose kept allocations are reported"),
            "base_step": _Param(True, "the step they are compared with"),
            "step_mark": _Param(
                False, "count steps by this mark's occurrences, from 0 [default: step records]"
            ),
            "binary": _Param(False, _BINARY),
            "heap": _Param(False, _HEAP),
        },
    ),
    "export": (
        export_events,
        {
            "input_path": _Param(True, _INPUT),
            "output": _Param(True, "the CSV or SQLite file to write"),
            "data_format": _Param(False, "csv or db [default: csv]"),
            "binary": _Param(False, _BINARY),
        },
    ),
    "inefficient": (
        check_inefficient,
        {
            "input_path": _Param(True, _INPUT),
            "mem_size": _Param(False, "leave out blocks smaller than this many bytes [default 0]"),
            "inefficient_type": _Param(
                False,
                "a list of early_allocation, late_deallocation, temporary_idleness [default: all]",
            ),
            "idle_threshold": _Param(
                False,
                f"idle means more launches than this between two uses [default {IDLE_THRESHOLD}]",
            ),
            "binary": _Param(False, _BINARY),
        },
    ),
}


def list_analyzers() -> list[str]:
    """The analyses analyze() runs."""
    return list(_ANALYZERS)


def get_analyzer_config(analyzer_type: str) -> dict[str, Any]:
    """The parameters of an analysis: {name: {"required": bool, "description": str}}."""
    return {
        name: {"required": p.required, "description": p.description}
        for name, p in _parameters(analyzer_type).items()
    }


def analyze(analyzer_type: str, **kwargs: Any) -> Any:
    """Run an analysis with its parameters (see get_analyzer_config) and return its result."""
    params = _parameters(analyzer_type)
    unknown = sorted(set(kwargs) - set(params))
    missing = [name for name, p in params.items() if p.required and name not in kwargs]
    if unknown or missing:
        what = "; ".join(
            part
            for part in (
                f"unknown {', '.join(unknown)}" if unknown else "",
                f"missing {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise UserError(
            f"analyzer {analyzer_type!r}: {what} (its parameters: {', '.join(params)})."
        )
    run = _ANALYZERS[analyzer_type][0]
    return run(**kwargs)


def _parameters(analyzer_type: str) -> dict[str, _Param]:
    if analyzer_type not in _ANALYZERS:
        raise UserError(f"no analyzer {analyzer_type!r}: one of {', '.join(_ANALYZERS)}.")
    return _ANALYZERS[analyzer_type][1]


def _open(input_path: PathLike, heap: str | None) -> WindowLog:
    """The capture, its reader's warnings (rotation, a cut file) issued as warnings."""
    cap = analysis.open_window_log(input_path, heap)
    for message in cap.warnings:
        warnings.warn(message, stacklevel=3)
    return cap


def _program(cap: WindowLog, binary: PathLike | None) -> str:
    """The program to name frames against: `binary`, else the one the .heap names."""
    if binary is not None:
        return os.fspath(binary)
    if cap.profile is None or not cap.profile.exe:
        raise UserError(
            f"no .heap file says which program wrote {cap.log.base}: pass"
            " binary=<the program that ran>."
        )
    return cap.profile.exe


def _report(cap: WindowLog, leaks: LeakSet, binary: PathLike | None) -> list[Leak]:
    rows, symbolizer_warnings = log_pipeline.rank_leaks(leaks, _program(cap, binary))
    for message in symbolizer_warnings:
        warnings.warn(message, stacklevel=3)
    print(format_leaks(rows, leaks.scope, leaks.profile.heap), end="")
    return rows
