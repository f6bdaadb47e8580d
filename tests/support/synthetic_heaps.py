"""Heap profiles written by hand: a .heap file as mem_profiler writes it, symbolized
profiles of named stacks, and .heap files whose frames are the functions of programs
built here (their addresses differ from one build to another, their names do not)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.heap_file import parse_heap
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

OURS = """\
heap_v2/1024
# mem_profiler 0.1.0
# pid: 4242
# cmdline: ./leaky 200
# exe: /abs/path/to/leaky
# heap: host
# window_start_ns: 1763750000000000000
# window_end_ns: 1763750001000000000
# unwinder: libunwind
# max_depth: 64
# dropped_samples: 3
# build_id: /abs/path/to/leaky 3f2a00
# build_id: /usr/lib/x86_64-linux-gnu/libc.so.6 AB12
  t*: 120: 491520 [130: 532480]
@ 0x55d0c0a01234 0x55d0c0a01300 0x7f12a0029d90
  t*: 100: 409600 [100: 409600]
@ 0x55d0c0a01250 0x55d0c0a01300
  t*: 20: 81920 [30: 122880]

MAPPED_LIBRARIES:
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 123 /abs/path/to/leaky
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 123 /abs/path/to/leaky
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
7ffe0000-7ffe1000 rw-p 00000000 00:00 0
"""


def named_stacks(
    prof: HeapProfile, stacks: list[list[str]], values: np.ndarray | None = None
) -> SymbolizedProfile:
    """prof's stacks symbolized by hand: stack i is the names stacks[i] (leaf first), one
    location per function; values as SymbolizedProfile takes them (None: prof's own)."""
    names: dict[str, int] = {}  # one location per function
    frames = np.array([names.setdefault(n, len(names)) for s in stacks for n in s], np.int64)
    offsets = np.r_[0, np.cumsum([len(s) for s in stacks])].astype(np.int64)
    return SymbolizedProfile(
        prof,
        np.arange(len(names), dtype=np.uint64),
        list(names),
        np.arange(len(names)),
        [None] * len(names),
        frames,
        offsets,
        values=values,
    )


def hand_symbolized(stacks: list[list[str]], objs: list[int], nbytes: list[int]):
    """A SymbolizedProfile of named stacks at rate 1 (values exact)."""
    lines = ["heap_v2/1"]
    for stack, o, b in zip(stacks, objs, nbytes, strict=True):
        lines += ["@ " + " ".join("0x1" for _ in stack), f"  t*: {o}: {b} [{o}: {b}]"]
    return named_stacks(parse_heap("\n".join(lines + ["MAPPED_LIBRARIES:"]) + "\n"), stacks)


# --- .heap files of named functions, for reports compared whole -------------------------

PAGE = 4096


@dataclass(frozen=True)
class Mapped:
    """An object as a process mapped it: `path` as MAPPED_LIBRARIES names it, loaded at
    `base`. With `image` (an ELF file built here) its mappings are its PT_LOAD segments
    and its frames are named by symbol; without, it is an object of another machine, one
    executable mapping of `size` bytes whose frames are given by offset (and stay
    `name+0x...` in the reports); with no path either, anonymous code (a JIT's)."""

    path: str
    base: int
    image: Path | None = None
    size: int = 0

    def frame(self, symbol: str) -> int:
        """One byte into the function `symbol` (its name in the symbol table, mangled):
        a return address there steps back to the function's first byte, and a leaf
        stays inside it, so either way the frame is the function, whatever its code."""
        return self.base + _functions(self.image)[symbol] + 1

    def at(self, offset: int) -> int:
        return self.base + offset

    def maps(self) -> list[str]:
        """Its lines of /proc/<pid>/maps."""
        if self.image is None:
            end = self.base + self.size
            return [f"{self.base:x}-{end:x} r-xp 00000000 00:00 0 {self.path}".rstrip()]
        lines = []
        with self.image.open("rb") as f:
            for seg in ELFFile(f).iter_segments():
                if seg["p_type"] != "PT_LOAD":
                    continue
                start = self.base + seg["p_vaddr"] // PAGE * PAGE
                end = self.base + -(-(seg["p_vaddr"] + seg["p_memsz"]) // PAGE) * PAGE
                flags = seg["p_flags"]
                perms = "".join(
                    c if flags & bit else "-" for c, bit in zip("rwx", (4, 2, 1), strict=True)
                )
                offset = seg["p_offset"] // PAGE * PAGE
                lines.append(f"{start:x}-{end:x} {perms}p {offset:08x} fe:01 4242 {self.path}")
        return lines

    def build_id(self) -> str:
        """Its `# build_id:` line: that of the file built here."""
        assert self.image is not None
        with self.image.open("rb") as f:
            section = ELFFile(f).get_section_by_name(".note.gnu.build-id")
            assert isinstance(section, NoteSection)
            (note,) = section.iter_notes()
            return f"# build_id: {self.path} {note['n_desc']}"


@functools.cache
def _functions(image: Path) -> dict[str, int]:
    """The link-time address of each function of an ELF file, by its symbol's name."""
    with image.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        return {
            s.name: s["st_value"]
            for s in symtab.iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC" and s["st_value"]
        }


@dataclass(frozen=True)
class Site:
    """A stack (addresses, leaf first) and what it stands for: the objects and bytes in
    use at the dump and allocated in the window, as its `# estimate:` line says."""

    stack: list[int]
    inuse_objects: int
    inuse_space: int
    alloc_objects: int
    alloc_space: int

    def lines(self, rate: int) -> list[str]:
        """Its stack, the samples a sampler of this rate would have taken (the reports
        read the estimate, not them) and its estimate."""
        counts = []
        for objs, nbytes in (
            (self.inuse_objects, self.inuse_space),
            (self.alloc_objects, self.alloc_space),
        ):
            size = nbytes / objs if objs else 0
            samples = round(objs * -math.expm1(-size / rate)) if objs else 0
            counts += [samples, round(samples * size)]
        return [
            "@ " + " ".join(f"0x{a:x}" for a in self.stack),
            "  t*: {}: {} [{}: {}]".format(*counts),
            f"# estimate: {self.inuse_objects:.2f} {self.inuse_space:.2f}"
            f" {self.alloc_objects:.2f} {self.alloc_space:.2f}",
        ]


def heap_text(rate: int, header: list[str], sites: list[Site], mapped: list[Mapped]) -> str:
    """A .heap file as the sampler writes it: `header` (its `# key: value` lines), the
    sites, and the mappings of the objects."""
    body = [line for site in sites for line in site.lines(rate)]
    counters = [line for line in body if line.startswith("  t*:")]
    total = [sum(int(c.split()[k].strip("[]:")) for c in counters) for k in range(1, 5)]
    maps = [line for m in mapped for line in m.maps()]
    return "\n".join(
        [
            f"heap_v2/{rate}",
            *header,
            "  t*: {}: {} [{}: {}]".format(*total),
            *body,
            "",
            "MAPPED_LIBRARIES:",
            *maps,
            "",
        ]
    )
