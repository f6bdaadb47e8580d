"""What kind of program a file is, as far as loading the sampler into it goes.

A statically linked program has no dynamic loader: LD_PRELOAD and --attach have nothing
to load the sampler with. A Go program allocates its own heap from mmap, so only its C
calls (cgo) reach the malloc hooks, and it leaves through exit_group without running
exit handlers, so no profile is written at its end. Both are told by the ELF headers:
no program interpreter, and the Go toolchain's build-id note."""

from __future__ import annotations

import enum
import os
import re

from .elf_headers import read_headers
from .input_files import open_regular

_GO_NOTE = ".note.go.buildid"  # the section cmd/link writes into every Go program


class ProgramKind(enum.Enum):
    DYNAMIC = "dynamic"
    GO = "go"  # dynamically linked: cgo
    STATIC = "static"
    STATIC_GO = "static Go"


def program_kind(path: str) -> ProgramKind | None:
    """The kind of the ELF program at `path`; None for anything else (a script, a file
    that cannot be read), which callers leave to the loader to judge."""
    try:
        with open_regular(path, "a program", OSError) as f:
            headers = read_headers(f)
    except OSError:
        return None
    if headers is None:
        return None
    go = _GO_NOTE in headers.sections
    if headers.interpreter:
        return ProgramKind.GO if go else ProgramKind.DYNAMIC
    return ProgramKind.STATIC_GO if go else ProgramKind.STATIC


# qemu-user's emulators (qemu-aarch64-static, ...): static programs that run another,
# whose own loader loads the sampler.
_EMULATOR_RE = re.compile(r"qemu-[a-z0-9_]+(-static)?")


def is_emulator(path: str) -> bool:
    """Whether `path` names one of qemu-user's emulators."""
    return bool(_EMULATOR_RE.fullmatch(os.path.basename(path)))


def command_kind(command: str, path: str | None = None) -> ProgramKind | None:
    """The kind of the program `command` names, looked up on PATH as exec does; None for
    qemu-user's emulators, whose kind is that of the program they run."""
    if is_emulator(command):
        return None
    import shutil

    found = command if os.sep in command else shutil.which(command, path=path)
    return program_kind(found) if found else None


def unloadable_reason(kind: ProgramKind | None) -> str | None:
    """Why the sampler cannot be loaded into a program of this kind, as the end of a
    sentence; None when it can."""
    if kind is ProgramKind.STATIC:
        return (
            "is statically linked: it has no dynamic loader to load the sampler with; "
            "link it dynamically to profile it"
        )
    if kind is ProgramKind.STATIC_GO:
        return (
            "is a statically linked Go program: it has no dynamic loader to load the "
            "sampler with, and Go's own heap never calls malloc; build it with cgo "
            "to see its C allocations, and use Go's pprof for its Go heap"
        )
    return None


GO_EXIT = (
    "is a Go program: it leaves through exit_group without running exit handlers, so "
    "no profile is written at its end; take one while it runs (`mem_profiler dump -p "
    "PID`, or a window with `mem_profiler -p PID -s SECONDS`). Only its C allocations "
    "(cgo) reach the sampler; Go's own heap is Go pprof's"
)
