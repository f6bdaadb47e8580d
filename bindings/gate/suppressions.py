"""What a leak check leaves out: the memory the C library, the loader and the Python
interpreter keep on purpose until the process exits, which LeakSanitizer and valgrind
leave out by default too, and the user's own rules (`--suppressions FILE`).

A rule matches a stack when its pattern matches the name of any of its frames as the
reports show it (a Python frame: `name (file.py)`). A file holds one rule a line, as
LeakSanitizer's do: `leak:PATTERN`, where `*` matches any run of characters and a
leading `^` or trailing `$` anchors the pattern (unanchored, it may match anywhere in a
name); blank lines and `#` comments are skipped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mem_profiler.core.errors import UserError
from mem_profiler.core.input_files import read_errors, read_regular
from mem_profiler.parser.read.text import show

_MAX_FILE_BYTES = 1 << 20
USERS = "your suppressions"
PYTHON = "Python's interpreter and modules"


@dataclass(frozen=True)
class Suppression:
    pattern: str
    reason: str  # what the report calls what it left out
    regex: re.Pattern[str]


def suppression(pattern: str, reason: str) -> Suppression:
    """A rule of LeakSanitizer's pattern syntax."""
    anchored_start, anchored_end = pattern.startswith("^"), pattern.endswith("$")
    body = pattern[1 if anchored_start else 0 : -1 if anchored_end else None]
    regex = ".*".join(map(re.escape, body.split("*")))
    return Suppression(
        pattern,
        reason,
        re.compile(("^" if anchored_start else "") + regex + ("$" if anchored_end else "")),
    )


def _rules(reason: str, patterns: Iterable[str]) -> list[Suppression]:
    return [suppression(p, reason) for p in patterns]


# The frames that allocate what their libraries keep for the process's lifetime; none of
# them is a frame the program's own code passes through to allocate (the loader's
# _dl_init, which runs the program's constructors, is left out on purpose).
BUILTIN: tuple[Suppression, ...] = (
    *_rules("stdio's buffers", ["^_IO_file_doallocate$"]),
    *_rules(
        "the locale",
        [
            "^setlocale$",
            "^newlocale$",
            "^_nl_find_locale$",
            "^_nl_find_domain$",
            "^__wcsmbs_load_conv$",
            "^__gconv_open$",
            "^__gconv_find_transform$",
        ],
    ),
    *_rules(
        "the loader",
        [
            "^_dl_map_object",
            "^_dl_new_object$",
            "^_dl_check_map_versions$",
            "^_dl_find_object_update",
            "^_dlfo_mappings_segment_allocate$",
            "^_dlerror_run$",
        ],
    ),
    *_rules(
        "thread-local storage",
        ["^_dl_allocate_tls", "^_dl_resize_dtv$", "^_dl_update_slotinfo$", "^__tls_get_addr$"],
    ),
    *_rules(
        PYTHON,
        [
            "(<frozen importlib._bootstrap>)$",
            "(<frozen importlib._bootstrap_external>)$",
            "^_shutdown (threading.py)$",
            "^Py_InitializeFromConfig$",
            "^Py_InitializeEx$",
            "^_PyPathConfig_",
            "^_PyRuntime_Initialize$",
            "^pymain_init$",
            "^_PyImport_",
            "^PyImport_",
            "^new_arena$",
            "^_PyUnicode_InternInPlace$",
            "^PyUnicode_InternInPlace$",
            "^_PyUnicode_InternMortal$",
            "^_PyUnicode_InternImmortal$",
        ],
    ),
)


def read_suppressions(path: str) -> tuple[Suppression, ...]:
    """The rules of a file; UserError, naming the line, for one that is not a rule."""
    with read_errors(path, UserError):
        data = read_regular(path, "a suppressions file", UserError, _MAX_FILE_BYTES)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    rules = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        kind, sep, pattern = text.partition(":")
        if kind != "leak" or not sep or not pattern.strip("^$*"):
            raise UserError(f"{path}:{number}: expected 'leak:PATTERN', found {show(line)}")
        rules.append(suppression(pattern, USERS))
    return tuple(rules)


# In a Python program, a stack of the main thread without a Python frame is the
# interpreter's own, made as it starts or ends, not the program's (whose code, and the
# extensions it calls, run under Python frames); Debian's stripped, LTO-built python3
# names few of those frames, only the entry points.
INTERPRETERS_OWN = Suppression(
    "a main-thread stack without Python frames", PYTHON, re.compile("^$")
)
_INTERPRETER_ENTRIES = frozenset({"Py_BytesMain", "Py_Main", "Py_RunMain", "pymain_main"})


def suppressed_by(
    frames: Sequence[str], rules: Sequence[Suppression], interpreter_only: bool = False
) -> Suppression | None:
    """The first rule that matches one of the frames, if any; `interpreter_only`: the
    stack is a Python program's and has no Python frame."""
    if interpreter_only and not _INTERPRETER_ENTRIES.isdisjoint(frames):
        return INTERPRETERS_OWN
    for rule in rules:
        if any(rule.regex.search(frame) for frame in frames):
            return rule
    return None
