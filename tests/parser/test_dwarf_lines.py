"""The line tables read from .debug_line (parser/elf/dwarf_lines.py) are binutils'
addr2line's reading of the same DWARF: the same line at function starts and inside
functions across the file, on a C++ program built with each DWARF flavour GCC writes,
a Rust program, libc's Debian debug file and the interpreter's libpython; row for row
pyelftools' decoding of the same programs; and a damaged program is one sentence."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from support.dwarf_files import (
    FLAVOURS,
    cxx_program,
    flavour_id,
    interpreters_libpython,
    libc_debug_file,
)

from mem_profiler.core.errors import ElfError
from mem_profiler.parser.elf.dwarf_dies import DebugInfo
from mem_profiler.parser.elf.image import ElfImage

SAMPLES = 1500  # addresses asked of each file
RUST_MAIN = b'fn main() { let v: Vec<u64> = (0..99).collect(); println!("{v:?}"); }'


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / "cache"))


def assert_agrees_with_addr2line(path: str) -> None:
    """At the start and a third of the way into functions across the file, the same
    line as addr2line, or none where it has none. (Not always its file: for a line of
    a file the unit includes, as glibc's strfromd.c does strfrom-skeleton.c, binutils
    2.40 names the unit's own file; test_every_row_is_pyelftools_row checks files.)"""
    symbols = ElfImage(path).symbols()
    starts, ends = symbols.starts, symbols.ends
    inside = np.unique(np.concatenate([starts, starts + (ends - starts) // 3]))
    addrs = inside[:: max(1, len(inside) // SAMPLES)]
    ours = ElfImage(path).lines(addrs)
    out = subprocess.run(
        ["addr2line", "-e", path, "-a", *map(hex, addrs.tolist())],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    theirs = [line.split(" (discriminator")[0] for line in out if not line.startswith("0x")]
    assert len(theirs) == len(addrs)
    got = [str(mine[1]) if mine else "?" for mine in ours]
    expected = [place.rpartition(":")[2] for place in theirs]
    expected = ["?" if line == "0" else line for line in expected]
    wrong = [
        (hex(a), g, e) for a, g, e in zip(addrs.tolist(), got, expected, strict=True) if g != e
    ]
    assert not wrong, wrong[:10]
    assert got.count("?") < len(addrs) // 2


@pytest.mark.parametrize("flags", FLAVOURS, ids=flavour_id)
def test_a_cxx_program_in_each_dwarf_flavour(run_folder, flags):
    assert_agrees_with_addr2line(cxx_program(run_folder, flags))


def test_a_rust_program(tmp_path):
    exe = tmp_path / "vec_sum"
    subprocess.run(
        ["rustc", "-g", "-O", "-o", exe, "-"],
        input=RUST_MAIN,
        check=True,
    )
    assert_agrees_with_addr2line(str(exe))


def test_libc_from_its_debian_debug_file():
    assert_agrees_with_addr2line(libc_debug_file())


def test_the_interpreters_libpython():
    assert_agrees_with_addr2line(interpreters_libpython())


@pytest.mark.parametrize("flags", FLAVOURS, ids=flavour_id)
def test_every_row_is_pyelftools_row(run_folder, flags):
    """Address, file and line of every row of every unit, end of sequence included,
    but the rows at their sequence's end address, which hold no byte (a function's last
    row is often one: a lookup just past the function found its line)."""
    with open(cxx_program(run_folder, flags), "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        dies = DebugInfo(dwarf)
        rows = 0
        for unit in dwarf.iter_CUs():
            _, _, ours = dies.unit_lines(unit.cu_offset)
            program = dwarf.line_program_for_CU(unit)
            assert ours is not None and program is not None
            theirs: list[tuple[int, int, int]] = []
            sequence = 0
            for state in (e.state for e in program.get_entries() if e.state is not None):
                if state.end_sequence:
                    while len(theirs) > sequence and theirs[-1][0] == state.address:
                        theirs.pop()
                    theirs.append((state.address, state.file, 0))
                    sequence = len(theirs)
                else:
                    theirs.append((state.address, state.file, state.line))
            assert list(zip(ours.addrs, ours.files, ours.lines, strict=True)) == theirs
            rows += len(theirs)
    assert rows > 500


def line_section(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".debug_line")
        assert section is not None
        return section["sh_offset"], section["sh_size"]


def test_a_damaged_line_program_is_an_elf_error(run_folder, tmp_path, monkeypatch):
    """Its opcodes garbled (the header intact), or its header's fields out of range: one
    sentence naming the file, and nothing read past the section."""
    exe = tmp_path / "cxx_stl"
    shutil.copyfile(cxx_program(run_folder, ["-gdwarf-5"]), exe)
    addrs = ElfImage(str(exe)).symbols().starts
    start, size = line_section(exe)
    whole = exe.read_bytes()
    rng = random.Random(7)
    outcomes = set()
    for trial in range(40):
        data = bytearray(whole)
        if trial == 0:  # the header's lengths say the program runs past the section
            data[start : start + 4] = b"\xf0\xff\xff\x7f"
        else:
            for _ in range(trial):
                data[start + rng.randrange(size)] = rng.randrange(256)
        exe.write_bytes(bytes(data))
        monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / f"cache{trial}"))  # same build-id
        try:
            lines = ElfImage(str(exe)).lines(addrs)
            assert len(lines) == len(addrs)
            outcomes.add("read")
        except ElfError as e:
            assert "is not a valid ELF binary" in str(e), e
            outcomes.add("refused")
    assert "refused" in outcomes, outcomes
