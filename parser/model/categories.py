"""What a stack's memory is for, by where its frames are (msMemScope's decomposition): a
table of rules, each a category, a regular expression a frame's file must match
(searched) and one its function's name, without its class, must match (whole), tried
from a stack's innermost frame outwards. A rule whose file is `<native>` is for native
frames: its name is matched against the function's name without its arguments,
templates and return type (`torch::autograd::Engine::thread_main`). The first frame
some rule matches names the category; a stack no rule matches is `other`.

The defaults are PyTorch training's: what a module's import allocates is `other` (one
imported on first use, inside a step, and PyTorch's own as it is imported: the class
bodies and decorators of torch/optim), what the optimizers allocate their state, what
autograd's backward pass allocates gradients, what a module's construction (or its
move to a device) allocates weights, and what a `forward` allocates activations. The
backward pass of tensors on a device runs on autograd's thread for that device, which
has no Python frame: its engine's loop names it. cuBLAS's workspaces, which PyTorch
takes from the caching allocator as a thread first multiplies matrices, are other."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.input_files import read_errors, read_regular
from mem_profiler.parser.model.aggregate import FlatCum, share_base
from mem_profiler.parser.read.text import show
from mem_profiler.parser.symbols.names import short_name
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

OTHER = "other"
NATIVE = "<native>"  # the file of a rule for native frames
IMPORTLIB = "<frozen importlib."  # the files of the import machinery's frames
_MAX_RULES_BYTES = 1 << 20


# How long a user's expression may take on one name: a backtracking one ((a+)+$) can take
# longer than the universe on a name of 40 characters.
MATCH_TIME_LIMIT_S = 0.05


class Pattern(Protocol):
    """A compiled expression: re's, or a user's (BoundedPattern)."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> object | None: ...

    def fullmatch(self, text: str) -> object | None: ...


@dataclass(frozen=True)
class Rule:
    """`framework`: the files are a framework's own, whose code run as its modules are
    imported (class bodies, decorators) is no category of the program's memory."""

    category: str
    file: Pattern
    function: Pattern
    framework: bool = False


def rule(category: str, file: str, function: str) -> Rule:
    return Rule(category, re.compile(file), re.compile(function))


def torch_rule(category: str, file: str, function: str) -> Rule:
    """A rule for PyTorch's own files."""
    return Rule(category, re.compile(file), re.compile(function), framework=True)


class BoundedPattern:
    """A user's expression, run by the `regex` module with a bound on time per name;
    past it, UserError naming the rule and the name."""

    def __init__(self, text: str, where: str) -> None:
        import regex  # the rules of a file only

        self.pattern = text
        self.where = where
        self._compiled = regex.compile(text)

    def search(self, text: str) -> object | None:
        return self._bounded(self._compiled.search, text)

    def fullmatch(self, text: str) -> object | None:
        return self._bounded(self._compiled.fullmatch, text)

    def _bounded(self, match: Callable[..., object | None], text: str) -> object | None:
        try:
            return match(text, timeout=MATCH_TIME_LIMIT_S)
        except TimeoutError:
            raise UserError(
                f"{self.where}: the expression '{self.pattern}' took more than "
                f"{MATCH_TIME_LIMIT_S * 1000:.0f} ms on a name of {len(text)} characters; "
                "a repetition inside a repetition, as in (a+)+, backtracks without end: "
                "write it with one"
            ) from None


TORCH_RULES = (
    # cuBLAS's workspace, one per handle and stream, taken from the caching allocator by
    # the first matrix product of a thread: in a forward, or on autograd's device thread
    rule(
        OTHER,
        NATIVE,
        r"at::cuda::(\(anonymous namespace\)::)?\w*(Workspace|BlasHandle|BlasLtHandle)\w*",
    ),
    rule(OTHER, r"", r"<module>"),  # a module's own code, run as it is imported
    rule(OTHER, "^" + re.escape(IMPORTLIB), r".*"),
    torch_rule("optimizer_state", r"/torch/optim/", r".*"),
    torch_rule("gradients", r"/torch/autograd/graph\.py$", r"_engine_run_backward"),
    torch_rule("gradients", r"/torch/autograd/__init__\.py$", r"backward|grad"),
    torch_rule("gradients", r"/torch/_tensor\.py$", r"backward"),
    rule("gradients", NATIVE, r"torch::autograd::Engine::thread_main"),
    torch_rule("weights", r"/torch/nn/parameter\.py$", r".*"),
    torch_rule("weights", r"/torch/nn/modules/", r"__init__|reset_parameters|_apply"),
    rule("activations", r"", r"forward"),
    torch_rule("activations", r"/torch/nn/functional\.py$", r".*"),
)


def read_rules(path: str) -> tuple[Rule, ...]:
    """Rules from a file, one a line: `CATEGORY FILE_REGEX FUNCTION_REGEX` (blank lines
    and `#` comments skipped); UserError, naming the line, for a bad one."""
    import regex  # the expressions of a file of rules only

    rules = []
    with read_errors(path, UserError):
        data = read_regular(path, "a file of category rules", UserError, _MAX_RULES_BYTES)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path} is not UTF-8 text (byte {e.start}): save the rules as UTF-8"
        ) from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3:
            raise UserError(
                f"{path}:{number}: expected 'CATEGORY FILE_REGEX FUNCTION_REGEX',"
                f" found {show(line)}"
            )
        category, file, function = fields
        where = f"{path}:{number}"
        try:
            rules.append(
                Rule(category, BoundedPattern(file, where), BoundedPattern(function, where))
            )
        except regex.error as e:
            raise UserError(f"{where}: a bad regular expression: {e}") from None
    return tuple(rules)


def category_names(rules: tuple[Rule, ...]) -> list[str]:
    """The categories of `rules` and OTHER, sorted."""
    return sorted({r.category for r in rules} | {OTHER})


def stack_categories(
    sym: SymbolizedProfile, rules: tuple[Rule, ...]
) -> tuple[list[str], np.ndarray]:
    """The categories (category_names) and each stack's index among them."""
    names = category_names(rules)
    of_function = np.full(len(sym.functions) + 1, -1, np.int64)  # a rule's index; -1: none
    files = sym.python_files or [None] * len(sym.functions)
    # the functions of these stacks alone: a part of a merged profile's names them all
    located = np.bincount(sym.frames, minlength=len(sym.func_of)) > 0
    for i in np.unique(sym.func_of[located]).tolist():
        name, file = sym.functions[i], files[i]
        if file is not None:
            short = name.rsplit(".", 1)[-1]  # Adam._init_group: _init_group
            found = (
                k
                for k, r in enumerate(rules)
                if r.file.pattern != NATIVE and r.file.search(file) and r.function.fullmatch(short)
            )
        else:  # the name searched first: short_name is slow beside it
            found = (
                k
                for k, r in enumerate(rules)
                if r.file.pattern == NATIVE
                and r.function.search(name)
                and r.function.fullmatch(short_name(name))
            )
        of_function[i] = next(found, -1)
    category = np.full(len(sym.offsets) - 1, names.index(OTHER), np.int64)
    # per location, then per frame: no array of every frame's function
    per_frame = of_function[sym.func_of].astype(np.int32)[sym.frames]
    ruled = np.flatnonzero(per_frame >= 0)  # frames leaf first: a stack's first is its
    if len(ruled):  # innermost
        stack_of = np.searchsorted(sym.offsets, ruled, side="right") - 1
        innermost = np.r_[True, stack_of[1:] != stack_of[:-1]]
        first, stacks = ruled[innermost], stack_of[innermost]
        of_rule = np.array([names.index(r.category) for r in rules], np.int64)
        matched = per_frame[first]
        imported = _run_by_its_import(sym, files, rules, first, sym.offsets[1:][stacks], matched)
        category[stacks] = np.where(imported, names.index(OTHER), of_rule[matched])
    return names, category


def _run_by_its_import(
    sym: SymbolizedProfile,
    files: list[str | None],
    rules: tuple[Rule, ...],
    first: np.ndarray,
    ends: np.ndarray,
    matched: np.ndarray,
) -> np.ndarray:
    """Per stack whose innermost ruled frame is at `first` (its rule `matched`, its frames
    ending before `ends`): whether a framework's rule matched it as the framework's
    module is imported, the rule's files leading outward from it to a `<module>` frame of
    theirs before any other Python frame, and importlib's frame next outward (the
    program's own script is run, not imported). A class body or a decorator of
    torch/optim is not an optimizer's state. Native frames are passed over."""
    # each file's rule matched once; index -1 (no file): the False appended
    index = {file: i for i, file in enumerate(dict.fromkeys(f for f in files if f is not None))}
    distinct = list(index)
    file_of = np.array([-1 if f is None else index[f] for f in files], np.int64)
    is_python = file_of >= 0
    is_module = is_python & np.array([name == "<module>" for name in sym.functions], bool)
    is_import = np.array([f.startswith(IMPORTLIB) for f in distinct] + [False])[file_of]

    def frames_where(of_function: np.ndarray) -> np.ndarray:
        return np.flatnonzero(of_function[sym.func_of][sym.frames])

    def function_at(positions: np.ndarray) -> np.ndarray:
        return sym.func_of[sym.frames[positions]]

    python_at = frames_where(is_python)
    imported = np.zeros(len(first), bool)
    for k in np.unique(matched).tolist():
        rule = rules[k]
        if not rule.framework:
            continue
        in_package = np.array([bool(rule.file.search(f)) for f in distinct] + [False])[file_of]
        mine = np.flatnonzero(matched == k)
        stops = frames_where(is_python & (~in_package | is_module))
        module = _next_at(stops, first[mine], ends[mine])
        module[~(is_module & in_package)[function_at(module)]] = -1
        caller = _next_at(python_at, module, ends[mine])
        imported[mine] = (caller >= 0) & is_import[function_at(caller)]
    return imported


def _next_at(positions: np.ndarray, after: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per entry of `after`, the first of the sorted `positions` past it and before its
    entry of `ends`; -1 where there is none, or where the entry of `after` is -1."""
    if not len(positions):
        return np.full(len(after), -1, np.int64)
    at = np.searchsorted(positions, after, side="right")
    found = positions[np.minimum(at, len(positions) - 1)]
    return np.where((after >= 0) & (at < len(positions)) & (found < ends), found, -1)


def categorize(sym: SymbolizedProfile, index: str, rules: tuple[Rule, ...]) -> FlatCum:
    """The profile's value under `index` by category, largest first (flat and cum are
    the same: a stack is in one category)."""
    names, category = stack_categories(sym, rules)
    values = sym.value(index)
    totals = np.bincount(category, weights=values, minlength=len(names))
    order = [i for i in np.argsort(-np.abs(totals), kind="stable").tolist() if totals[i] != 0]
    return FlatCum(
        index,
        float(values.sum()),
        share_base(values),
        [names[i] for i in order],
        totals[order],
        totals[order],
    )
