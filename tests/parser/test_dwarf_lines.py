"""The line tables read from .debug_line (parser/elf/dwarf_lines.py) are, row for row,
pyelftools' decoding of the same programs, on a C++ program built with each DWARF
flavour GCC writes; and a damaged program is one sentence."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from mem_profiler.core.errors import ElfError
from mem_profiler.parser.elf.dwarf_dies import DebugInfo
from mem_profiler.parser.elf.image import ElfImage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FLAVOURS = [["-gdwarf-5"], ["-gdwarf-4"], ["-gdwarf-3", "-gstrict-dwarf"], ["-gdwarf-5", "-gz"]]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / "cache"))


def cxx_program(folder: Path, flags: list[str]) -> str:
    exe = folder / "cxx_stl"
    subprocess.run(
        ["g++", "-O2", *flags, "-pthread", "-o", exe, FIXTURES / "cxx_stl.cpp"], check=True
    )
    return str(exe)


@pytest.mark.parametrize("flags", FLAVOURS, ids=lambda flags: " ".join(flags))
def test_every_row_is_pyelftools_row(tmp_path, flags):
    """Address, file and line of every row of every unit, end of sequence included."""
    with open(cxx_program(tmp_path, flags), "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        dies = DebugInfo(dwarf)
        rows = 0
        for unit in dwarf.iter_CUs():
            _, _, ours = dies.unit_lines(unit.cu_offset)
            program = dwarf.line_program_for_CU(unit)
            assert ours is not None and program is not None
            theirs = [
                (e.state.address, e.state.file, 0 if e.state.end_sequence else e.state.line)
                for e in program.get_entries()
                if e.state is not None
            ]
            assert list(zip(ours.addrs, ours.files, ours.lines, strict=True)) == theirs
            rows += len(theirs)
    assert rows > 500


def line_section(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".debug_line")
        assert section is not None
        return section["sh_offset"], section["sh_size"]


def test_a_damaged_line_program_is_an_elf_error(tmp_path, monkeypatch):
    """Its opcodes garbled (the header intact), or its header's fields out of range: one
    sentence naming the file, and nothing read past the section."""
    exe = Path(cxx_program(tmp_path, ["-gdwarf-5"]))
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
