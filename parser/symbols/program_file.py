"""The program a profile names: where it is (under a sysroot), whether its owner may
read it, whether it is the build that ran (its build-id), and its mappings."""

from __future__ import annotations

import os

from mem_profiler.core.errors import BuildIdMismatch, ProgramNotHere, UserError
from mem_profiler.core.input_files import open_regular, other_owner
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile
from mem_profiler.core.user_paths import NotReadableFor
from mem_profiler.parser.elf.image import ElfImage
from mem_profiler.parser.read.heap_file import read_heap, read_heap_header
from mem_profiler.parser.read.pprof import names_every_frame


def read_for(profile: HeapProfile) -> int | None:
    """The user a profile is read for, where not the reader (root reading a user's file
    or a user's process): only what they may read is read for it."""
    if profile.owner is not None:
        return profile.owner if profile.owner != os.geteuid() else None
    return other_owner(profile.path)


def check_owner_reads_program(profile: HeapProfile, exe: str) -> None:
    """UserError when the program a profile names is one its owner, another user than
    the reader, may not read: -p is then the reader's own choice to make."""
    owner = read_for(profile)
    if owner is None:
        return
    try:
        open_regular(exe, "a program", UserError, for_uid=owner).close()
    except NotReadableFor:
        raise UserError(
            f"{exe} is not readable by the owner of {profile.path} (uid {owner}):"
            " name the program with -p to read its symbols."
        ) from None
    except OSError:
        return  # said as the program that is not there, or not readable


def in_sysroot(path: str, sysroot: str | None) -> str:
    """Where an object the profile names is on this machine: under `sysroot` (the
    program's root file system, copied from the machine it ran on) where it is there,
    else at its own path."""
    if sysroot is None or not path.startswith("/"):
        return path
    inside = os.path.join(sysroot, path.lstrip("/"))
    return inside if os.path.isfile(inside) else path


def recorded_program(heap_file: str, sysroot: str | None = None) -> tuple[str | None, str | None]:
    """The program that ran, named by the file's `# exe:` line or else, as pprof and
    jeprof take it, by the first object of its memory map (jemalloc's and gperftools'
    files), found under `sysroot` where given; and its build-id, checked against the one
    recorded: UserError, one sentence, when the file names none, it is gone or it is
    another build (ProgramNotHere for the first two). None for a profile that names
    every frame itself (pprof's)."""
    if heap_file.endswith(".memlog"):
        raise UserError(
            f"{heap_file} is an event log, which does not name its program: give"
            " it with -p BIN, or -f the capture's .heap file."
        )
    profile = read_heap_header(heap_file)
    if names_every_frame(profile):
        return None, None
    exe = profile.exe or next(
        (m.path for m in read_heap(heap_file).mappings if m.path.startswith("/")), ""
    )
    foreign = not profile.version  # another tool's legacy profile
    if not exe:
        raise ProgramNotHere(
            f"{heap_file} does not name the program that ran (no '# exe:' line and no"
            " memory map): give it with -p BIN.",
            foreign,
        )
    recorded = profile.build_ids.get(exe)
    exe = in_sysroot(exe, sysroot)
    check_owner_reads_program(profile, exe)
    if not os.path.isfile(exe):
        raise ProgramNotHere(
            f"{exe}, the program that ran, is no longer there: give a copy of it with -p BIN"
            " (or its machine's root file system with --sysroot DIR).",
            foreign,
        )
    found = ElfImage(exe).build_id
    if recorded is not None and found != recorded:
        raise UserError(
            f"{exe} is not the build that ran (build-id {found or 'none'}, the"
            f" profile's {recorded}): it was rebuilt; give the binary that ran"
            " with -p BIN."
        )
    return exe, recorded


def program_mappings(exe: ElfImage) -> list[MemoryMapping]:
    """The mappings of a profile that records none (Go's `heap/N`): the program's
    segments at their link-time addresses, as pprof takes them; a position-independent
    program's addresses then fall outside them and stay addresses."""
    return [
        MemoryMapping(seg.vaddr, seg.vaddr + seg.filesz, "r-xp", seg.offset, exe.path)
        for seg in exe.segments
    ]


def exe_paths(profile: HeapProfile, basename: str) -> set[str]:
    """Mapping paths that stand for the program given with -p."""
    paths = {m.path for m in profile.mappings}
    if profile.exe and profile.exe in paths:
        return {profile.exe}
    same_name = {p for p in paths if os.path.basename(p) == basename}
    if same_name:
        return same_name
    first = next((m.path for m in profile.mappings if m.path), None)
    return {first} if first else set()


def check_exe_build_id(
    profile: HeapProfile,
    exe: ElfImage,
    exe_paths: set[str],
    allow_mismatch: bool,
    warnings: list[str],
) -> None:
    if exe_paths and not profile.build_ids:  # jemalloc's, gperftools' and Go's files
        warnings.append(
            f"the profile records no build-id: that {exe.path} is the build that ran"
            " could not be checked."
        )
    for path in sorted(exe_paths):
        recorded = profile.build_ids.get(path)
        if recorded is None or recorded == exe.build_id:
            continue
        what = (
            f"{exe.path} has build-id {exe.build_id or 'none'} but the profile was recorded"
            f" from {path} with build-id {recorded}"
        )
        if not allow_mismatch:
            raise BuildIdMismatch(
                f"{what}; pass the binary that ran, or --allow-mismatch"
                " to symbolize with this one anyway."
            )
        warnings.append(f"{what}; symbols may be wrong.")
