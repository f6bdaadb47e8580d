"""The files whose DWARF the parser's readers are checked on: a C++ program built with
each DWARF flavour GCC writes, libc's Debian debug file and the interpreter's
libpython."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from mem_profiler.parser.elf.image import ElfImage
from support.once import built_once
from support.paths import FIXTURES

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
FLAVOURS = [
    ["-gdwarf-5"],
    ["-gdwarf-4"],
    ["-gdwarf-3", "-gstrict-dwarf"],
    ["-gdwarf-5", "-gz"],  # compressed sections
]


def flavour_id(flags: list[str]) -> str:
    return " ".join(flags)


def cxx_program(run_folder: Path, flags: list[str]) -> str:
    """tests/fixtures/cxx_stl.cpp built at -O2 with `flags`, once per run (g++ takes 2 s
    of a core)."""
    with built_once(run_folder / "cxx_stl", flags) as (folder, done):
        if not done:
            subprocess.run(
                ["g++", "-O2", *flags, "-pthread", "-o", folder / "cxx_stl",
                 FIXTURES / "cxx_stl.cpp"],
                check=True,
            )  # fmt: skip
    return str(folder / "cxx_stl")


def libc_debug_file() -> str:
    debug = ElfImage(LIBC).debug_path
    if debug is None:
        pytest.fail("libc6-dbg is not installed: run the tests with `make test`")
    return debug


def interpreters_libpython() -> str:
    """The running interpreter's libpython (skipped where it has none)."""
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    path = os.path.join(libdir or "", name or "")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not os.path.isfile(path):
        pytest.skip(f"{sys.executable} is not built with a shared libpython")
    return path
