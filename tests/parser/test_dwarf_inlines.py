"""The inlined calls read from .debug_info (parser/elf/dwarf_dies.py) are binutils'
addr2line's reading of the same DWARF: at addresses across every segment of the
inline table, the same chain of inlined functions, innermost first, each with its call
site. On a C++ program built with each DWARF flavour GCC writes, on libc's Debian
debug file and on the pyenv interpreter's libpython."""

from __future__ import annotations

import os
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from support.dwarf_files import (
    FLAVOURS,
    LIBC,
    cxx_program,
    flavour_id,
    interpreters_libpython,
    libc_debug_file,
)
from support.paths import FIXTURES

from mem_profiler.core.errors import ElfError
from mem_profiler.parser.elf.dwarf_dies import DebugInfo
from mem_profiler.parser.elf.dwarf_tables import InlineTable
from mem_profiler.parser.elf.image import ElfImage

SAMPLES = 1500  # addresses asked of each file


def inline_table(path: str) -> InlineTable:
    with open(path, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        return InlineTable.merge(
            [
                InlineTable.empty(),
                *(t for t, _ in InlineTable.from_cus(dwarf, list(dwarf.iter_CUs()))),
            ]
        )


def addr2line_chains(path: str, addrs: list[int]) -> list[list[tuple[str, str]]]:
    """addr2line -f -i's frames at each address: (function, its place), innermost first."""
    out = subprocess.run(
        ["addr2line", "-e", path, "-f", "-i", "-a", *map(hex, addrs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    chains: list[list[str]] = []
    for line in out:
        if line.startswith("0x"):
            chains.append([])
        else:
            chains[-1].append(line)
    return [list(zip(c[0::2], c[1::2], strict=True)) for c in chains]


def site(place: str) -> str:
    """file:line as its base name and line (addr2line does not normalise paths)."""
    return os.path.basename(place.split(" (discriminator")[0])


def assert_agrees_with_addr2line(path: str) -> None:
    table = inline_table(path)
    assert len(table.parent) > 0, f"{path} has no inlined calls"
    middles = table.starts[:-1] + (table.starts[1:] - table.starts[:-1]) // 2
    addrs = middles[:: max(1, len(middles) // SAMPLES)]
    ours = table.chains(addrs)
    theirs = addr2line_chains(path, addrs.tolist())
    assert len(theirs) == len(addrs)
    symbols = ElfImage(path).symbols()
    holders = [symbols.names[i] if i >= 0 else "" for i in symbols.lookup(addrs).tolist()]
    inlined = fallback = 0
    for addr, chain, frames, holder in zip(addrs.tolist(), ours, theirs, holders, strict=True):
        # addr2line's frames: the innermost function with where the address is in it,
        # then each caller with the call site of the function inside it
        expected = [(frames[i][0], site(frames[i + 1][1])) for i in range(len(frames) - 1)]
        got = [(name, f"{os.path.basename(s[0])}:{s[1]}" if s else "??:0") for name, s in chain]
        inlined += bool(chain)
        if got and expected and got[1:] == expected[1:] and got[0][1] == expected[0][1]:
            # binutils names some innermost inlined calls after the symbol holding
            # the address; their call sites still agree
            if got[0][0] != expected[0][0] and expected[0][0] == holder:
                fallback += 1
                continue
        assert got == expected, (hex(addr), got, expected)
    assert inlined > len(addrs) // 4
    assert fallback <= len(addrs) // 20, fallback


@pytest.mark.parametrize("flags", FLAVOURS, ids=flavour_id)
def test_a_cxx_program_in_each_dwarf_flavour(run_folder, flags):
    assert_agrees_with_addr2line(cxx_program(run_folder, flags))


def test_libc_from_its_debian_debug_file():
    assert_agrees_with_addr2line(libc_debug_file())


def test_the_interpreters_libpython():
    assert_agrees_with_addr2line(interpreters_libpython())


def test_a_damaged_unit_is_an_elf_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / "cache"))
    exe = tmp_path / "inlined"
    subprocess.run(["gcc", "-O2", "-g", "-o", exe, FIXTURES / "inlined.c"], check=True)
    addrs = inline_table(str(exe)).starts
    data = bytearray(exe.read_bytes())
    with open(exe, "rb") as f:
        info = ELFFile(f).get_section_by_name(".debug_info")
        assert info is not None
        start, size = info["sh_offset"], info["sh_size"]
    half = size // 2  # the unit's own DIE intact, its children garbled
    data[start + half : start + size] = b"\xff" * (size - half)
    exe.write_bytes(bytes(data))
    with pytest.raises(ElfError, match="is not a valid ELF binary .*damaged DWARF unit"):
        ElfImage(str(exe)).inlined(addrs)


def test_only_the_functions_asked_about_are_read_and_kept(tmp_path, monkeypatch):
    """Asked in rounds, as symbolizing profile after profile does, and from the symbol
    cache in a later process, the inlined calls at each address are those of the whole
    file's table; each function is read once, and a later round asks only of what is new."""
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / "cache"))
    libc = libc_debug_file()
    whole = inline_table(libc)
    middles = whole.starts[:-1] + (whole.starts[1:] - whole.starts[:-1]) // 2
    addrs = middles[:: max(1, len(middles) // SAMPLES)]
    first, second = addrs[0::2], addrs[1::2]
    read: list[int] = []
    walk = DebugInfo._walk

    def counted(self, unit, wanted, spans):
        read.append(len(wanted) if wanted is not None else -1)
        return walk(self, unit, wanted, spans)

    monkeypatch.setattr(DebugInfo, "_walk", counted)
    image = ElfImage(LIBC)
    assert image.inlined(first) == whole.chains(first)
    asked_first = sum(read)
    assert -1 not in read and 0 < asked_first <= len(first)
    assert image.inlined(addrs) == whole.chains(addrs)  # only the second half is new
    assert 0 < sum(read) - asked_first <= len(second)
    read.clear()
    again = ElfImage(LIBC)
    assert again.inlined(addrs) == whole.chains(addrs)
    assert read == []  # all from the cache
