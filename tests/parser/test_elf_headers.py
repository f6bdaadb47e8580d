"""The ELF headers read with struct (bindings/core/elf_headers.py) are pyelftools' reading of
them, on the machine's own objects of every class and byte order found, and a damaged
or cut file reads as None (ElfImage then asks pyelftools, which says what is wrong)."""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pytest

from mem_profiler.core.elf_headers import read_headers
from mem_profiler.core.errors import ElfError
from mem_profiler.parser.elf.image import ElfImage, _pyelftools_headers

OBJECTS = sorted(
    {
        *glob.glob("/usr/lib/x86_64-linux-gnu/lib[cmz].so.*"),
        *glob.glob("/usr/lib/x86_64-linux-gnu/libstdc++.so.*"),
        *glob.glob("/usr/lib/x86_64-linux-gnu/libsqlite3.so.*"),
        # 32-bit and big-endian test programs that Debian's Go ships, where installed
        *glob.glob("/usr/share/go-*/src/runtime/pprof/testdata/test*"),
        "/usr/bin/sqlite3",
        "/usr/sbin/ldconfig",  # statically linked: no PT_INTERP
        sys.executable,
    }
)


@pytest.mark.parametrize("path", [p for p in OBJECTS if Path(p).is_file()])
def test_the_headers_are_pyelftools_reading_of_them(path):
    with open(path, "rb") as f:
        ours = read_headers(f)
        assert ours is not None
        assert ours == _pyelftools_headers(f)
    assert ours.segments


def test_a_cut_or_damaged_file_reads_as_none_and_elfimage_says_so(tmp_path):
    data = Path(sys.executable).resolve().read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:200])  # the program headers, not the sections'
    with open(cut, "rb") as f:
        assert read_headers(f) is None
    with pytest.raises(ElfError):
        ElfImage(str(cut))
    odd = tmp_path / "odd"
    odd.write_bytes(data[:4] + b"\x07" + data[5:])  # a class that is neither 32 nor 64
    with open(odd, "rb") as f:
        assert read_headers(f) is None
