"""An ELF file opened as the parser opens one: a regular file the reader may read, the
ways pyelftools fails on it turned into ElfError, pyelftools imported by the first."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from elftools.common.exceptions import DWARFError, ELFError

from mem_profiler.core.errors import ElfError
from mem_profiler.core.input_files import open_regular, read_errors

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile


def open_elf(path: str, for_uid: int | None) -> BinaryIO:
    """An ELF file opened for reading: a FIFO or device named in a memory map is refused
    (ElfError) rather than read, as is one `for_uid` may not read."""
    return open_regular(path, "an ELF binary", ElfError, for_uid)


@contextlib.contextmanager
def elf_errors(path: str) -> Iterator[None]:
    """Turn the ways reading an ELF file can fail into ElfError."""
    try:
        with read_errors(path, ElfError):
            yield
    except (ELFError, DWARFError, ValueError, KeyError, IndexError) as e:
        raise ElfError(f"{path} is not a valid ELF binary ({e}).") from None


def elf_file(f: BinaryIO) -> ELFFile:
    """pyelftools' reader of an ELF file; pyelftools (50 ms) imported by the first, as a
    report whose symbols are all cached reads none."""
    from elftools.elf.elffile import ELFFile

    return ELFFile(f)
