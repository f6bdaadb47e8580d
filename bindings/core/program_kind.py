"""What kind of program a file is, as far as loading the sampler into it goes.

A statically linked program has no dynamic loader: LD_PRELOAD and --attach have nothing
to load the sampler with. A Go program allocates its own heap from mmap, so only its C
calls (cgo) reach the malloc hooks, and it leaves through exit_group without running
exit handlers, so no profile is written at its end. Both are told apart by reading the
ELF program headers: no PT_INTERP, and the Go toolchain's build-id note."""

from __future__ import annotations

import enum
import os
import shutil
import struct

from .input_files import open_regular

_ELF_HEADER = struct.Struct("<4sB11xHHIQQQIHHH")  # 64-bit little-endian only
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
_NOTE_HEADER = struct.Struct("<III")
_PT_INTERP, _PT_NOTE = 3, 4
_GO_BUILD_ID = (b"Go\0\0", 4)  # the note's owner and type (cmd/link's ELF writer)
_MAX_HEADERS = 64  # programs have about a dozen; a bound for files that are not
_MAX_NOTE_BYTES = 4096


class ProgramKind(enum.Enum):
    DYNAMIC = "dynamic"
    GO = "go"  # dynamically linked: cgo
    STATIC = "static"
    STATIC_GO = "static Go"


def program_kind(path: str) -> ProgramKind | None:
    """The kind of the 64-bit ELF program at `path`; None for anything else (a script,
    a file that cannot be read), which callers leave to the loader to judge."""
    try:
        with open_regular(path, "a program", OSError) as f:
            header = f.read(_ELF_HEADER.size)
            if len(header) < _ELF_HEADER.size:
                return None
            magic, elf_class, *_, phoff, _, _, _, phentsize, phnum = _ELF_HEADER.unpack(header)
            if magic != b"\x7fELF" or elf_class != 2 or phentsize < _PROGRAM_HEADER.size:
                return None
            interpreter = go = False
            for i in range(min(phnum, _MAX_HEADERS)):
                f.seek(phoff + i * phentsize)
                entry = f.read(_PROGRAM_HEADER.size)
                if len(entry) < _PROGRAM_HEADER.size:
                    return None
                kind, _, offset, _, _, size, _, _ = _PROGRAM_HEADER.unpack(entry)
                interpreter |= kind == _PT_INTERP
                if kind == _PT_NOTE and not go:
                    f.seek(offset)
                    go = _has_go_note(f.read(min(size, _MAX_NOTE_BYTES)))
    except OSError:
        return None
    if interpreter:
        return ProgramKind.GO if go else ProgramKind.DYNAMIC
    return ProgramKind.STATIC_GO if go else ProgramKind.STATIC


def _has_go_note(notes: bytes) -> bool:
    at = 0
    while at + _NOTE_HEADER.size <= len(notes):
        name_size, desc_size, kind = _NOTE_HEADER.unpack_from(notes, at)
        at += _NOTE_HEADER.size
        name = notes[at : at + name_size]
        if (name, kind) == _GO_BUILD_ID:
            return True
        at += (name_size + 3) // 4 * 4 + (desc_size + 3) // 4 * 4
    return False


def command_kind(command: str, path: str | None = None) -> ProgramKind | None:
    """The kind of the program `command` names, looked up on PATH as exec does."""
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
