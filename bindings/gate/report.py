"""The gate's verdicts for people (text) and CI systems (JSON, JUnit XML).

JUnit follows the common schema (Ant's, as windyroad/JUnit-Schema writes it down):
<testsuites> holds one <testsuite> per command, with one <testcase> per budget; a
budget exceeded is a <failure>, one that could not be judged an <error>.
"""

from __future__ import annotations

import json
import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import fields, is_dataclass

from mem_profiler.core.escape import visible, xml_chars
from mem_profiler.core.units import format_size
from mem_profiler.core.version import VERSION
from mem_profiler.gate.budgets import Budget, format_percent
from mem_profiler.gate.check import (
    EXCEEDED,
    HOLD,
    SETUP_ERROR,
    BudgetResult,
    CommandVerdict,
    StackLine,
    gate_status,
)
from mem_profiler.gate.kinds import (
    CATEGORY,
    GROWTH,
    LEAK_PER_STACK,
    LIVE_AT_EXIT,
    PEAK,
    TOTAL_ALLOC,
)
from mem_profiler.parser.common.atomic import write_file
from mem_profiler.parser.report.notes import shown_frames

JSON_FORMAT = 1
_VERDICTS = {HOLD: "hold", EXCEEDED: "exceeded", SETUP_ERROR: "error"}
_TITLES = {
    PEAK: "stacks live at the peak",
    LIVE_AT_EXIT: "stacks holding the most at exit",
    LEAK_PER_STACK: "stacks holding the most at exit",
    TOTAL_ALLOC: "stacks that allocated most",
    GROWTH: "stacks whose allocations grew most against the baseline",
    CATEGORY: "the category's stacks holding the most at its peak",
}


def format_result(result: BudgetResult) -> str:
    """The result as report lines: verdict, measure, limit, exactness; for an exceeded
    budget, the stacks responsible and any notes."""
    budget = result.budget
    what = budget.kind
    if budget.kind == CATEGORY:
        what += f" {budget.category}"
    if budget.kind == GROWTH:
        what += f" {os.path.basename(budget.baseline or '')}: peak"
    op = ">" if result.exceeded else "<="
    line = (
        f"{'FAIL' if result.exceeded else 'ok  '} {budget.heap} {what} "
        f"{_value(result.measured, result.exact)} {op} limit "
        f"{format_size(result.limit, exact=result.exact)}"
    )
    if result.baseline_peak is not None:
        line += (
            f" (baseline {format_size(result.baseline_peak, exact=result.exact)}"
            f" + {format_percent(budget.tolerance)})"
        )
    if result.exact:
        line += ", exact"
    else:
        bound = ", an upper bound" if budget.kind in (PEAK, GROWTH) else ""
        line += (
            f", estimated at -c {result.rate}: ±{format_size(result.sd, exact=False)} (1 sd{bound})"
        )
    out = [line]
    if result.stacks:
        out.append(f"     {_TITLES[budget.kind]}:")
        out += [f"     {_stack_line(s)}" for s in result.stacks]
    out += [f"     note: {n}" for n in result.notes]
    return "\n".join(out)


def _value(value: float, exact: bool) -> str:
    return format_size(value) if exact else f"~{format_size(value, exact=False)}"


def _stack_line(stack: StackLine) -> str:
    frames = shown_frames(stack.frames, stack.python_at)
    text = f"{'+' if stack.baseline_bytes is not None else ''}{round(stack.bytes):,} B"
    text = f"{text:>16}  {' < '.join(map(visible, frames)) or '(no frames)'}"
    if stack.baseline_bytes is not None:
        text += (
            f"  ({round(stack.baseline_bytes):,} B -> "
            f"{round(stack.baseline_bytes + stack.bytes):,} B)"
        )
    return text


def format_verdicts(verdicts: list[CommandVerdict]) -> str:
    """The report on stderr: per command its results, stacks of those exceeded, notes."""
    out = []
    for v in verdicts:
        out.append(
            f"mem_profiler gate: {v.name}: {visible(' '.join(v.argv))}"
            + (f" (pid {v.pid})" if v.pid else "")
            + (
                ", every allocation recorded"
                if v.rate <= 1
                else f", sampled at -c {v.rate}: values are estimates"
            )
        )
        out += [format_result(r) for r in v.results]
        if v.other_processes:
            out.append(f"     {_other_processes(v.other_processes)}")
        if v.problem:
            out.append(f"ERROR {v.problem}")
    budgets = sum(len(v.results) for v in verdicts)
    exceeded = sum(len(v.exceeded) for v in verdicts)
    problems = sum(1 for v in verdicts if v.problem)
    if exceeded:
        summary = f"{exceeded} of {budgets} budgets exceeded"
    elif problems:
        summary = f"{budgets} budgets checked"
    else:
        summary = f"every budget holds ({budgets} checked)"
    if problems:
        summary += f"; {problems} of {len(verdicts)} commands could not be judged fully"
    out.append(f"mem_profiler gate: {summary}")
    return "\n".join(out) + "\n"


def _other_processes(n: int) -> str:
    return (
        f"{n} other process{'es' if n > 1 else ''} (forks of the command) "
        f"wrote profiles; only the command's own process is judged"
    )


def verdicts_to_json(verdicts: list[CommandVerdict]) -> dict:
    status = gate_status(verdicts)
    return {
        "format": JSON_FORMAT,
        "mem_profiler": VERSION,
        "exit_status": status,
        "verdict": _VERDICTS[status],
        "commands": [_saved(v) for v in verdicts],
    }


def _saved(value: object) -> object:
    """A verdict as JSON holds it: each dataclass an object of its fields, in their order,
    less those that are no part of its value (a budget's baseline profile)."""
    if is_dataclass(value):
        return {f.name: _saved(getattr(value, f.name)) for f in fields(value) if f.compare}
    if isinstance(value, list):
        return [_saved(item) for item in value]
    return value


def verdicts_from_json(doc: dict) -> list[CommandVerdict]:
    """The verdicts of a document written by write_json."""
    return [_verdict(c) for c in doc["commands"]]


def _verdict(saved: Mapping) -> CommandVerdict:
    rest = dict(saved)
    budgets = [Budget(**b) for b in rest.pop("budgets")]
    results = [_result(r) for r in rest.pop("results")]
    return CommandVerdict(budgets=budgets, results=results, **rest)


def _result(saved: Mapping) -> BudgetResult:
    rest = dict(saved)
    budget = Budget(**rest.pop("budget"))
    stacks = [StackLine(**s) for s in rest.pop("stacks")]
    return BudgetResult(budget=budget, stacks=stacks, **rest)


def write_json(path: str | os.PathLike[str], verdicts: list[CommandVerdict]) -> None:
    write_file(path, (json.dumps(verdicts_to_json(verdicts), indent=2) + "\n").encode())


def junit_tree(verdicts: list[CommandVerdict]) -> ET.ElementTree[ET.Element]:
    """<testsuites>, a <testsuite> per command, a <testcase> per budget (and one for the
    command's exit status when it failed)."""
    root = ET.Element("testsuites")
    host = socket.gethostname() or "localhost"
    for index, v in enumerate(verdicts):
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"memory budgets: {v.name}",
            package="mem_profiler.gate",
            id=str(index),
            timestamp=v.started,
            hostname=host,
            time=f"{v.seconds:.3f}",
        )
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("command", " ".join(v.argv)),
            ("pid", v.pid),
            ("exit_code", v.exit_code),
            ("rate", v.rate),
            ("other_processes", v.other_processes),
        ):
            ET.SubElement(props, "property", name=key, value="" if value is None else str(value))
        results = {r.budget.key: r for r in v.results}
        cases = []
        for budget in v.budgets:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"memory_budget.{v.name}",
                name=budget.describe(),
                time="0",
            )
            result = results.get(budget.key)
            if result is None:
                _child(case, "error", "GateError", v.problem or "not judged", v.problem or "")
            elif result.exceeded:
                text = format_result(result)
                _child(case, "failure", "MemoryBudgetExceeded", text.split("\n", 1)[0], text)
            cases.append(case)
        if v.problem and v.results:
            case = ET.SubElement(
                suite, "testcase", classname=f"memory_budget.{v.name}", name="exit status", time="0"
            )
            _child(case, "error", "CommandFailed", v.problem, v.problem)
            cases.append(case)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
        suite.set("errors", str(sum(c.find("error") is not None for c in cases)))
        suite.set("skipped", "0")
        ET.SubElement(suite, "system-out").text = ""
        ET.SubElement(suite, "system-err").text = format_verdicts([v])
    for element in root.iter():  # command lines and names may hold what XML cannot
        element.text = element.text and xml_chars(element.text)
        for key, value in element.attrib.items():
            element.set(key, xml_chars(value))
    return ET.ElementTree(root)


def _child(case: ET.Element, tag: str, kind: str, message: str, text: str) -> None:
    ET.SubElement(case, tag, type=kind, message=message).text = text


def write_junit(path: str | os.PathLike[str], verdicts: list[CommandVerdict]) -> None:
    tree = junit_tree(verdicts)
    ET.indent(tree)
    write_file(path, ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True) + b"\n")
