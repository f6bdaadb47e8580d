"""The functions' ranges read from .eh_frame_hdr and .eh_frame (parser/elf/eh_frame.py),
which name a stripped program's functions by their starts, are binutils' readelf's
reading of the same FDEs, range for range: a C++ program, Debian's stripped C and Rust
programs, libc, the interpreter and the sampler (x86-64 and aarch64); in a stripped
program they hold the functions its unstripped build's symbols name; and damaged
sections give ranges, never an exception."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.dwarf_files import cxx_program
from support.interpreters import DEBIAN_PYTHON
from support.paths import ROOT

from mem_profiler.core.elf_headers import Section, read_headers
from mem_profiler.parser.elf.eh_frame import function_ranges
from mem_profiler.parser.elf.image import ElfImage

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
DEBIAN = ["/usr/bin/sqlite3", "/usr/bin/rg"]  # stripped, C and Rust (make test installs them)


def sections(path: str) -> tuple[Section, bytes, Section, bytes, bool]:
    """.eh_frame_hdr and .eh_frame of `path`, each with its bytes, and its byte order."""
    with open(path, "rb") as f:
        headers = read_headers(f)
        assert headers is not None
        found = {s.name: s for s in headers.section_headers}
        hdr, frame = found[".eh_frame_hdr"], found[".eh_frame"]
        f.seek(hdr.offset)
        hdr_data = f.read(hdr.size)
        f.seek(frame.offset)
        return hdr, hdr_data, frame, f.read(frame.size), headers.little_endian


def readelfs_ranges(path: str) -> list[tuple[int, int]]:
    # it exits 1 on its warnings of libc's (the DWARF it looks for in a debug file)
    out = subprocess.run(
        ["readelf", "--debug-dump=frames", path], capture_output=True, text=True
    ).stdout
    found = re.findall(r"FDE cie=\w+ pc=([0-9a-f]+)\.\.([0-9a-f]+)", out)
    return sorted({(int(a, 16), int(b, 16)) for a, b in found})


def objects(run_folder: Path) -> list[str]:
    return [
        cxx_program(run_folder, ["-gdwarf-5"]),
        *DEBIAN,
        LIBC,
        str(DEBIAN_PYTHON),
        str(ROOT / "build" / "libmemprof.so"),
        str(ROOT / "build" / "aarch64" / "libmemprof.so"),
    ]


def test_every_fde_is_readelfs(run_folder):
    for path in objects(run_folder):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: run the tests with `make test`")
        starts, ends = function_ranges(*sections(path))
        theirs = readelfs_ranges(path)
        assert len(theirs) > 20, path
        assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == theirs, path


# GCC's start-up files' functions, built without call-frame information
WITHOUT_FDES = {
    "_init",
    "_fini",
    "deregister_tm_clones",
    "register_tm_clones",
    "__do_global_dtors_aux",
    "frame_dummy",
}


def test_a_stripped_programs_functions_start_where_its_symbols_say(run_folder, tmp_path):
    """Each address inside a function of the unstripped build (its start, a third of
    the way in, its last byte) is named, in the stripped copy, by that function's start;
    in the start-up files' functions, which have no FDE, it stays itself."""
    program = cxx_program(run_folder, ["-gdwarf-5"])
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "--strip-all", "-o", stripped, program], check=True)
    symbols = ElfImage(program).symbols()
    sized = np.flatnonzero(symbols.ends - symbols.starts > 1)
    starts, ends = symbols.starts[sized], symbols.ends[sized]
    names = [symbols.names[i] for i in sized.tolist()]
    assert len(starts) > 20
    without = np.array([name in WITHOUT_FDES for name in names])
    image = ElfImage(str(stripped))
    for inside in (starts, starts + (ends - starts) // 3, ends - np.uint64(1)):
        assert (image.function_starts(inside) == np.where(without, inside, starts)).all()


def test_damaged_sections_give_ranges(run_folder):
    hdr, hdr_data, frame, frame_data, little = sections(DEBIAN[0])
    draw = random.Random(7)
    for _ in range(300):
        mangled = [bytearray(hdr_data), bytearray(frame_data)]
        which = mangled[draw.randrange(2)]
        for _ in range(draw.choice([1, 4, 64])):
            which[draw.randrange(len(which))] = draw.randrange(256)
        if draw.random() < 0.2:
            del which[draw.randrange(len(which)) :]
        starts, ends = function_ranges(hdr, bytes(mangled[0]), frame, bytes(mangled[1]), little)
        assert (ends > starts).all() and (np.diff(starts.astype(np.int64)) >= 0).all()
