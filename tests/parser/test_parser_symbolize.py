"""Symbolization and the mem_parser CLI against real compiled programs and the real libc.

Each test composes a .heap file by hand: the programs are built here (PIE, gcc -g), their
PT_LOAD segments are mapped at a load base as the kernel would, and frames point into
functions whose addresses are read from the ELF files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from support.paths import FIXTURES, MEM_PARSER, ROOT
from support.profiling import profile_run

from mem_profiler.cmd.mem_parser import main
from mem_profiler.core.errors import BuildIdMismatch, ElfError
from mem_profiler.parser.elf import image as elf_image
from mem_profiler.parser.elf import object_lookup, symcache
from mem_profiler.parser.elf.image import ElfImage
from mem_profiler.parser.model.aggregate import aggregate
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.symbols.names import short_name
from mem_profiler.parser.symbols.resolver import kept_images
from mem_profiler.parser.symbols.symbolize import symbolize

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBSTDCXX = os.path.realpath("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
LIBJEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
PIE_BASE, NOPIE_BASE, LIB_BASE, LIB2_BASE = 0x55D0C0A00000, 0, 0x7F12A0000000, 0x7F12B0000000
MiB = 1 << 20

PROG_C = r"""
#include <stdlib.h>
#include <string.h>
#ifndef VARIANT
#define VARIANT 1
#endif
void *keep[8];
__attribute__((noinline)) void *leaf_alloc(size_t n) {
    void *p = malloc(n);
    memset(p, VARIANT, n);
    return p;
}
__attribute__((noinline)) void *grow(size_t n) { return leaf_alloc(n); }
__attribute__((noinline)) void *walk(int depth, size_t n) {
    if (depth == 0)
        return grow(n);
    void *p = walk(depth - 1, n);
    __asm__ volatile("");
    return p;
}
static __attribute__((noinline)) void *hidden_helper(size_t n) { return grow(n + VARIANT); }
int main(int argc, char **argv) {
    keep[0] = walk(3, 4096);
    keep[1] = hidden_helper(100);
    keep[2] = strdup(argv[0]);
    return keep[0] == 0;
}
"""

WIDGET_CPP = r"""
#include <vector>
namespace ns {
struct Widget {
    std::vector<int> v;
    static Widget *make(int n);
};
Widget *Widget::make(int n) {
    Widget *w = new Widget;
    for (int i = 0; i < n; i++)
        w->v.push_back(i);
    return w;
}
}  // namespace ns
template <typename T> T *build(int n) { return new T[n]; }
int main(int argc, char **) { ns::Widget::make(argc * 100); build<double>(argc); return 0; }
"""


@dataclass
class Binary:
    """A compiled ELF file with its function symbols (mangled name -> (start, size))."""

    path: str
    funcs: dict[str, tuple[int, int]]
    build_id: str | None

    def pc(self, name: str, base: int, delta: int = 4) -> int:
        """A runtime address `delta` bytes into function `name` of an object loaded at base."""
        start, size = self.funcs[name]
        assert delta < size
        return base + start + delta


def load_binary(path: str) -> Binary:
    funcs: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
        assert isinstance(table, SymbolTableSection), path
        for sym in table.iter_symbols():
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"]:
                funcs.setdefault(sym.name, (sym["st_value"], sym["st_size"]))
    return Binary(path, funcs, ElfImage(path).build_id)


def compile_program(
    folder: Path, source: str, name: str, *flags: str, compiler: str = "gcc"
) -> Binary:
    src = folder / (name + (".cpp" if compiler == "g++" else ".c"))
    src.write_text(source)
    out = folder / name
    subprocess.run(
        [compiler, "-g", "-O1", "-fno-inline", *flags, "-o", str(out), str(src)], check=True
    )
    return load_binary(os.path.realpath(out))


def maps_lines(path: str, base: int) -> list[str]:
    """/proc/pid/maps lines for an ELF file loaded at base, from its PT_LOAD segments."""
    lines = []
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            start = base + (seg["p_vaddr"] & ~0xFFF)
            end = base + ((seg["p_vaddr"] + seg["p_memsz"] + 0xFFF) & ~0xFFF)
            perms = (
                "".join(
                    c if seg["p_flags"] & bit else "-" for c, bit in (("r", 4), ("w", 2), ("x", 1))
                )
                + "p"
            )
            offset = seg["p_offset"] & ~0xFFF
            lines.append(f"{start:x}-{end:x} {perms} {offset:08x} fe:01 77 {path}")
    return lines


def heap_text(
    exe: str,
    stacks: list[tuple[list[int], int, int]],
    maps: list[str],
    build_ids: Mapping[str, str | None],
    rate: int = 1,
) -> str:
    """A .heap file as the sampler writes it; stacks are (frames, objects, bytes)."""
    lines = [
        f"heap_v2/{rate}",
        "# mem_profiler 0.1.0",
        "# pid: 4242",
        f"# cmdline: {exe}",
        f"# exe: {exe}",
        "# heap: host",
    ]
    lines += [f"# build_id: {path} {bid}" for path, bid in build_ids.items()]
    objs, nbytes = sum(s[1] for s in stacks), sum(s[2] for s in stacks)
    lines.append(f"  t*: {objs}: {nbytes} [{objs}: {nbytes}]")
    for frames, o, b in stacks:
        lines += ["@ " + " ".join(f"0x{a:x}" for a in frames), f"  t*: {o}: {b} [{o}: {b}]"]
    return "\n".join(lines + ["", "MAPPED_LIBRARIES:", *maps]) + "\n"


def write_heap(
    path: Path,
    b: Binary,
    stacks: list[tuple[list[int], int, int]],
    library: str = LIBC,
    base: int = PIE_BASE,
    rate: int = 1,
    build_ids: dict[str, str] | None = None,
) -> Path:
    """heap_text of b loaded at base and `library` at LIB_BASE, written to path; the
    build ids are b's alone unless given."""
    maps = maps_lines(b.path, base) + maps_lines(library, LIB_BASE)
    ids = {b.path: b.build_id} if build_ids is None else build_ids
    path.write_text(heap_text(b.path, stacks, maps, ids, rate))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("programs")
    return {
        "prog": compile_program(folder, PROG_C, "prog"),
        "variant": compile_program(folder, PROG_C, "variant", "-DVARIANT=2"),
        "nopie": compile_program(folder, PROG_C, "nopie", "-no-pie"),
        "dwarf4": compile_program(folder, PROG_C, "dwarf4", "-gdwarf-4"),
        "exporting": compile_program(
            folder, PROG_C, "exporting", "-Wl,--export-dynamic-symbol=walk"
        ),
        "libc": load_binary(LIBC),
    }


@pytest.fixture(autouse=True)
def symbol_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(cache))
    return cache


def prog_heap(
    built,
    tmp_path,
    prog: str = "prog",
    base: int = PIE_BASE,
    rate: int = 1,
    build_ids: dict[str, str] | None = None,
) -> Path:
    """The standard profile of prog.c: recursion, a static function, a libc frame."""
    b, libc = built[prog], built["libc"]
    stacks = [
        (
            [
                b.pc("leaf_alloc", base),
                b.pc("grow", base),
                b.pc("walk", base, 20),
                b.pc("walk", base, 30),
                b.pc("main", base),
            ],
            6,
            6 * MiB,
        ),
        (
            [
                b.pc("leaf_alloc", base),
                b.pc("grow", base),
                b.pc("hidden_helper", base),
                b.pc("main", base),
            ],
            3,
            3 * MiB,
        ),
        ([libc.pc("strdup", LIB_BASE), b.pc("main", base, 8)], 1, MiB),
    ]
    ids = {b.path: b.build_id, LIBC: libc.build_id} if build_ids is None else build_ids
    return write_heap(tmp_path / f"{prog}.heap", b, stacks, base=base, rate=rate, build_ids=ids)


def run_cli(capsys, *args: str) -> tuple[int | str | None, str, str]:
    """mem_parser in this process: (exit status, stdout, stderr)."""
    code: int | str | None
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("prog, base", [("prog", PIE_BASE), ("nopie", NOPIE_BASE)])
def test_names_frames_of_the_program_and_libc(built, tmp_path, prog, base):
    sym = symbolize(read_heap(prog_heap(built, tmp_path, prog, base)), built[prog].path)
    assert sym.stack(0) == ["leaf_alloc", "grow", "walk", "walk", "main"]
    assert sym.stack(1) == ["leaf_alloc", "grow", "hidden_helper", "main"]
    assert sym.stack(2) == ["strdup", "main"]
    assert sym.warnings == []


def test_text_report_end_to_end(built, tmp_path):
    heap = prog_heap(built, tmp_path)
    done = subprocess.run(
        [MEM_PARSER, "-p", built["prog"].path, "-f", heap, "-t"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == (
        "Total: 10.0 MB\n"
        "     9.0  90.0%  90.0%      9.0  90.0% leaf_alloc\n"
        "     1.0  10.0% 100.0%      1.0  10.0% strdup\n"
        "     0.0   0.0% 100.0%     10.0 100.0% main\n"
        "     0.0   0.0% 100.0%      9.0  90.0% grow\n"
        "     0.0   0.0% 100.0%      6.0  60.0% walk\n"
        "     0.0   0.0% 100.0%      3.0  30.0% hidden_helper\n"
    )
    assert done.stderr == ""


def test_output_file_is_written_whole(built, tmp_path, capsys):
    heap, out = prog_heap(built, tmp_path), tmp_path / "out" / "report.txt"
    out.parent.mkdir()
    code, stdout, _ = run_cli(
        capsys, "-p", built["prog"].path, "-f", str(heap), "-t", "--inuse_objects", "-o", str(out)
    )
    assert code == 0 and stdout == ""
    assert out.read_text().startswith("Total: 10 objects\n       9  90.0%  90.0%        9")
    assert os.listdir(out.parent) == ["report.txt"]


def test_unsampled_totals(built, tmp_path):
    heap = prog_heap(built, tmp_path, rate=1024)
    table = aggregate(symbolize(read_heap(heap), built["prog"].path), "alloc_space")
    scale = 1 / (1 - math.exp(-MiB / 1024))  # every stack allocates 1 MiB blocks
    assert table.total == pytest.approx(10 * MiB * scale, rel=1e-12)


@pytest.mark.parametrize("prog", ["prog", "dwarf4"])
def test_lines_match_addr2line(built, tmp_path, prog):
    b = built[prog]
    sym = symbolize(read_heap(prog_heap(built, tmp_path, prog)), b.path, lines=True)
    frames = sym.stack(0, lines=True)
    for frame, func, vaddr in [
        (frames[0], "leaf_alloc", b.funcs["leaf_alloc"][0] + 4),
        (frames[2], "walk", b.funcs["walk"][0] + 20 - 1),
    ]:
        # the leaf is symbolized as written, a caller frame at its return address - 1
        where = subprocess.run(
            ["addr2line", "-e", b.path, hex(vaddr)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        assert re.fullmatch(rf"/.*/{prog}\.c:[1-9]\d*", where)
        assert frame == f"{func} {where}"
    assert aggregate(sym, lines=True).names[0] == frames[0]
    assert sym.stack(2, lines=True)[0].startswith("strdup")  # libc: with or without debug file
    assert sym.stack(0)[0] == "leaf_alloc"


def test_cxx_names_are_demangled_and_operator_new_stripped(tmp_path):
    w = compile_program(tmp_path, WIDGET_CPP, "widget", "-O0", compiler="g++")
    std = load_binary(LIBSTDCXX)
    chain = [
        "_ZNSt15__new_allocatorIiE8allocateEmPKv",
        "_ZNSt16allocator_traitsISaIiEE8allocateERS0_m",
        "_ZNSt12_Vector_baseIiSaIiEE11_M_allocateEm",
    ]
    chain = [n for n in chain if n in w.funcs]  # gcc 12 names; older ones differ
    stacks = [
        (
            [std.pc("_Znwm", LIB_BASE)]
            + [w.pc(n, PIE_BASE) for n in chain]
            + [w.pc("_ZN2ns6Widget4makeEi", PIE_BASE), w.pc("main", PIE_BASE)],
            1,
            400,
        ),
        (
            [std.pc("_Znam", LIB_BASE), w.pc("_Z5buildIdEPT_i", PIE_BASE), w.pc("main", PIE_BASE)],
            1,
            8,
        ),
    ]
    heap = write_heap(tmp_path / "w.heap", w, stacks, LIBSTDCXX)
    sym = symbolize(read_heap(heap), w.path)
    assert sym.stack(0)[0] == "std::_Vector_base::_M_allocate"
    assert sym.stack(0)[-2:] == ["ns::Widget::make", "main"]
    assert sym.stack(1) == ["build", "main"]
    assert sym.stack(0, full_names=True)[-2] == "ns::Widget::make(int)"
    assert sym.stack(1, full_names=True)[0] == "double* build<double>(int)"


def test_unresolved_frames(built, tmp_path):
    b = built["prog"]
    with open(b.path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".plt")
        assert section is not None
        plt = section["sh_addr"]  # code without symbols
    gone = "/nonexistent/libgone.so.1"
    maps = maps_lines(b.path, PIE_BASE) + [
        f"{LIB2_BASE:x}-{LIB2_BASE + 0x3000:x} r-xp 00002000 fe:01 9 {gone}",
        "7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0 [vdso]",
        "7f0000000000-7f0000100000 rwxp 00000000 00:00 0 ",
    ]
    stack = [PIE_BASE + plt + 4, LIB2_BASE + 0x1235, 0x7FFD10000101, 0x7F0000000011, 0x1001]
    heap = tmp_path / "u.heap"
    heap.write_text(heap_text(b.path, [(stack, 1, 64)], maps, {b.path: b.build_id}))
    sym = symbolize(read_heap(heap), b.path)
    assert sym.stack(0) == [
        f"prog+0x{plt:x}",  # the start of the .plt's FDE, which the linker writes
        "libgone.so.1+0x3234",
        "[vdso]+0x100",
        "0x7f0000000010",
        "0x1000",
    ]
    assert len(sym.warnings) == 1 and gone in sym.warnings[0]


def several_objects_heap(built, tmp_path) -> Path:
    """A profile of frames in the program, in libc (named from its debug file), in a
    library that is gone and in the vDSO."""
    b, libc = built["prog"], built["libc"]
    gone = "/nonexistent/libgone.so.1"
    maps = maps_lines(b.path, PIE_BASE) + [
        *maps_lines(LIBC, LIB_BASE),
        f"{LIB2_BASE:x}-{LIB2_BASE + 0x3000:x} r-xp 00002000 fe:01 9 {gone}",
        "7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0 [vdso]",
    ]
    stacks = [
        ([b.pc("leaf_alloc", PIE_BASE), b.pc("grow", PIE_BASE), b.pc("main", PIE_BASE)], 2, 64),
        ([libc.pc("strdup", LIB_BASE), b.pc("main", PIE_BASE, 8)], 1, 32),
        ([LIB2_BASE + 0x1235, 0x7FFD10000101, b.pc("walk", PIE_BASE, 20)], 1, 16),
    ]
    ids = {b.path: b.build_id, LIBC: libc.build_id}
    heap = tmp_path / "several.heap"
    heap.write_text(heap_text(b.path, stacks, maps, ids))
    return heap


def symbolized_fields(sym) -> tuple:
    return (
        [sym.stack(i, lines=True) for i in range(len(sym.offsets) - 1)],
        list(sym.functions),
        sym.warnings,
    )


def test_objects_looked_up_by_a_helper_process_are_named_as_here(built, tmp_path, monkeypatch):
    heap = several_objects_heap(built, tmp_path)
    alone = symbolize(read_heap(heap), built["prog"].path, lines=True)
    monkeypatch.setattr(object_lookup, "HELPER_MIN_ADDRESSES", 0)
    shared = symbolize(read_heap(heap), built["prog"].path, lines=True)
    assert symbolized_fields(shared) == symbolized_fields(alone)
    assert "leaf_alloc" in shared.stack(0) and shared.stack(1)[0] == "strdup"


def test_symbols_are_read_once_for_the_batches_of_kept_images(built, tmp_path, monkeypatch):
    """Within kept_images (a log's stacks named a batch at a time), each object's symbols
    are read once for every symbolize, and named as before; a file replaced in between is
    read again; outside it, each symbolize reads them anew."""
    prog = tmp_path / "prog"
    shutil.copy(built["prog"].path, prog)
    heap = several_objects_heap(built, tmp_path)
    heap.write_text(heap.read_text().replace(built["prog"].path, str(prog)))
    libc = ElfImage(LIBC).debug_path  # libc's symbols are its debug file's
    reads: Counter = Counter()
    read_symbols = elf_image._read_symbols

    def counted(path, *args):
        reads[path] += 1
        return read_symbols(path, *args)

    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / "no-cache"))
    monkeypatch.setattr(elf_image.symcache, "load", lambda *args: None)
    monkeypatch.setattr(elf_image, "_read_symbols", counted)
    monkeypatch.setattr(object_lookup, "HELPER_MIN_ADDRESSES", 1 << 30)
    first = symbolize(read_heap(heap), prog)
    assert reads == {str(prog): 1, libc: 1}, reads
    reads.clear()
    with kept_images():
        for _ in range(3):
            sym = symbolize(read_heap(heap), prog)
            assert symbolized_fields(sym) == symbolized_fields(first)
        assert reads == {str(prog): 1, libc: 1}, reads
        shutil.copy(built["variant"].path, tmp_path / "new")
        os.replace(tmp_path / "new", prog)
        with pytest.raises(BuildIdMismatch):  # the new file, not the one kept
            symbolize(read_heap(heap), prog)
    reads.clear()
    symbolize(read_heap(heap), built["prog"].path)
    assert reads[libc] == 1


def lookup_fields(lookup: object_lookup.ObjectLookup) -> tuple:
    return (
        lookup.found.tolist(),
        lookup.sym_of.tolist(),
        lookup.mangled,
        lookup.names,
        lookup.where,
        lookup.chains,
        lookup.stripped,
        lookup.has_symbols,
        lookup.error,
    )


def test_the_helper_process_answers_every_object_as_this_process_would(built, symbol_cache):
    """Every job through the helper alone: its answers, an object it cannot read
    included, against the lookups made here."""
    b, libc = built["prog"], built["libc"]
    prog, libc_image = ElfImage(b.path), ElfImage(LIBC)
    offsets = [
        np.array([b.pc("leaf_alloc", 0) - 1, b.pc("walk", 0, 20) - 1, 0x10], np.uint64),
        np.array([libc.pc("strdup", 0) - 1, libc.pc("malloc", 0)], np.uint64),
    ]
    jobs = [(prog, offsets[0]), (libc_image, offsets[1])]
    helper = object_lookup._Helper.start()
    assert helper is not None
    lookups: list = [None] * 3
    gone = copy.copy(prog)  # an image whose file went away after it was opened
    gone.path = str(symbol_cache / "gone.so")
    every = [*jobs, (gone, offsets[0])]
    helper.feed(every, object_lookup._Queue(every), lookups, True)
    helper.finish(wait=True)
    assert helper.process.returncode == 0
    here = [object_lookup.look_up(image, o, True) for image, o in jobs]
    assert [lookup_fields(x) for x in lookups[:2]] == [lookup_fields(x) for x in here]
    assert lookups[0].names[:2] == ["leaf_alloc", "walk"] and lookups[0].where[0] is not None
    assert lookups[2].error is not None and "gone.so" in lookups[2].error


def test_a_helper_that_fails_leaves_its_objects_to_this_process(built, tmp_path, monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a helper is started only with a core to spare")
    heap = several_objects_heap(built, tmp_path)
    alone = symbolize(read_heap(heap), built["prog"].path, lines=True)
    monkeypatch.setattr(object_lookup, "HELPER_MIN_ADDRESSES", 0)
    started: list[object_lookup._Helper | None] = []
    start = object_lookup._Helper.start

    def start_false():
        monkeypatch.setattr(object_lookup.sys, "executable", shutil.which("false"))
        started.append(start())
        return started[-1]

    monkeypatch.setattr(object_lookup._Helper, "start", start_false)
    shared = symbolize(read_heap(heap), built["prog"].path, lines=True)
    assert symbolized_fields(shared) == symbolized_fields(alone)
    assert started and started[0] is not None and started[0].process.returncode is not None


def test_a_helper_started_as_the_file_is_read_is_the_one_the_lookups_take(
    built, tmp_path, monkeypatch
):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a helper is started only with a core to spare")
    heap = several_objects_heap(built, tmp_path)
    alone = symbolize(read_heap(heap), built["prog"].path, lines=True)
    monkeypatch.setattr(object_lookup, "HELPER_MIN_ADDRESSES", 0)
    monkeypatch.setattr(object_lookup, "HELPER_EARLY_BYTES", heap.stat().st_size)
    started: list[object_lookup._Helper | None] = []
    start = object_lookup._Helper.start

    def start_counted():
        started.append(start())
        return started[-1]

    monkeypatch.setattr(object_lookup._Helper, "start", start_counted)
    with object_lookup.started_early(str(heap)):
        assert len(started) == 1  # before the file is read
        shared = symbolize(read_heap(heap), built["prog"].path, lines=True)
        assert object_lookup._early is None  # the lookups took it, and started no other
    assert len(started) == 1 and started[0] is not None
    assert started[0].process.returncode is not None
    assert symbolized_fields(shared) == symbolized_fields(alone)


def test_a_helper_started_early_that_nothing_takes_ends_with_the_block(tmp_path, monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a helper is started only with a core to spare")
    small, large = tmp_path / "small.heap", tmp_path / "large.heap"
    small.write_bytes(b"x" * 10)
    large.write_bytes(b"x" * 100)
    monkeypatch.setattr(object_lookup, "HELPER_EARLY_BYTES", 100)
    started: list[object_lookup._Helper | None] = []
    start = object_lookup._Helper.start

    def start_counted():
        started.append(start())
        return started[-1]

    monkeypatch.setattr(object_lookup._Helper, "start", start_counted)
    with object_lookup.started_early(str(small)):
        assert started == []  # too small to be worth one
    with object_lookup.started_early(str(large)):
        assert len(started) == 1
    assert started[0] is not None and started[0].process.returncode is not None
    assert object_lookup._early is None


def split_debug(src: str, debug: Path, stripped: Path, link: bool = True) -> None:
    """What Debian's packaging does: the debug sections into `debug`, the program
    stripped of them and of .symtab, with a .gnu_debuglink naming `debug` if `link`."""
    debug.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["objcopy", "--only-keep-debug", src, debug], check=True)
    subprocess.run(["strip", "--strip-all", "-o", stripped, src], check=True)
    if link:
        subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", stripped], check=True)


@pytest.mark.parametrize("how", ["beside", "dot-debug", "root+folder", "build-id"])
def test_separate_debug_file(built, tmp_path, monkeypatch, how):
    root = tmp_path / "debug-root"
    monkeypatch.setattr(elf_image, "DEBUG_ROOTS", (str(root),))
    src, bid = built["prog"].path, built["prog"].build_id
    stripped = tmp_path / "bin" / "prog"
    stripped.parent.mkdir()
    debug = {
        "beside": tmp_path / "bin" / "prog.debug",
        "dot-debug": tmp_path / "bin" / ".debug" / "prog.debug",
        "root+folder": root / str(tmp_path / "bin").lstrip("/") / "prog.debug",
        "build-id": root / ".build-id" / bid[:2] / f"{bid[2:]}.debug",
    }[how]
    split_debug(src, debug, stripped, link=how != "build-id")
    assert ElfImage(str(stripped)).debug_path == str(debug)
    heap = read_heap(prog_heap(built, tmp_path))
    sym = symbolize(heap, stripped, lines=True)
    assert sym.warnings == []
    frame = sym.stack(1, lines=True)[2]
    assert frame.startswith("hidden_helper ")  # a static function: only in .symtab
    assert frame.split(" ")[1].rsplit(":", 1)[0].endswith("prog.c")


def test_debuglink_without_build_id_is_checked_by_crc(tmp_path):
    nobid = compile_program(tmp_path, PROG_C, "nobid", "-Wl,--build-id=none")
    other = compile_program(tmp_path, PROG_C, "other", "-Wl,--build-id=none", "-DVARIANT=2")
    assert nobid.build_id is None
    stripped, debug = tmp_path / "bin" / "nobid", tmp_path / "bin" / "nobid.debug"
    stripped.parent.mkdir()
    split_debug(nobid.path, debug, stripped)
    assert ElfImage(str(stripped)).debug_path == str(debug)
    subprocess.run(["objcopy", "--only-keep-debug", other.path, debug], check=True)
    assert ElfImage(str(stripped)).debug_path is None  # another build's: its CRC differs


def test_a_copied_build_id_never_names_another_owners_object(tmp_path, monkeypatch):
    """Another user's file that carries this program's build-id, read first, fills the
    symbol cache: the program's own names and lines are still its own."""
    monkeypatch.setenv("MEMPROF_CACHE_DIR", str(tmp_path / "cache"))
    build_id = "-Wl,--build-id=0x" + "5a" * 20
    mine = compile_program(tmp_path, PROG_C, "mine", build_id)
    theirs = compile_program(tmp_path, PROG_C, "theirs", build_id, "-Dleaf_alloc=planted")
    assert mine.build_id == theirs.build_id
    os.chown(theirs.path, 65534, 65534)
    for binary, name, other, source in (
        (theirs, "planted", "leaf_alloc", "theirs.c"),
        (mine, "leaf_alloc", "planted", "mine.c"),
    ):
        image = ElfImage(binary.path)
        table = image.symbols()
        assert name in table.names and other not in table.names
        start = table.starts[table.names.index(name)]
        (line,) = image.lines(np.array([start], dtype=np.uint64))
        assert line is not None and os.path.basename(line[0]) == source


def test_a_users_profile_never_names_what_that_user_cannot_read(built, tmp_path, capsys):
    """Root reading a profile another user wrote reads only the objects that user may
    read: the program and a library in a folder of root's own (0700) are not read."""
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    library = secret / "libc.so.6"
    shutil.copy(LIBC, library)
    shutil.copy(built["prog"].path, secret / "prog")
    b, libc = load_binary(str(secret / "prog")), built["libc"]
    stacks = [([libc.pc("strdup", LIB_BASE), b.pc("main", PIE_BASE, 8)], 1, MiB)]
    heap = write_heap(tmp_path / "user.heap", b, stacks, library=str(library))
    code, out, err = run_cli(capsys, "-p", b.path, "-f", str(heap), "--collapsed")
    assert (code, out, err) == (0, "main;strdup 1048576\n", "")
    os.chown(heap, 65534, 65534)
    code, out, err = run_cli(capsys, "-p", b.path, "-f", str(heap), "--collapsed")
    assert code == 0 and re.fullmatch(r"main;libc\.so\.6\+0x[0-9a-f]+ 1048576\n", out), out
    assert err == (
        f"mem_parser: warning: {library} is not readable by the owner of {heap} (uid 65534):"
        " its frames stay unresolved.\n"
    )
    # the program as the profile names it
    code, out, err = run_cli(capsys, "-f", str(heap), "--collapsed")
    assert (code, out) == (2, "")
    assert err == (
        f"mem_parser: {b.path} is not readable by the owner of {heap} (uid 65534):"
        " name the program with -p to read its symbols.\n"
    )


def test_a_users_link_never_leads_to_what_that_user_cannot_read(built, tmp_path, capsys, request):
    """The profile of another user names `link.so`, their link to a library in a folder
    of root's own: root's report neither follows that user's link nor, through a link of
    root's own, reads what the user may not; the library's names stay unread."""
    top = Path(tempfile.mkdtemp(prefix="memprof-links-", dir="/tmp"))  # one nobody enters
    top.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(top))
    secret = top / "secret"
    secret.mkdir(mode=0o700)
    shutil.copy(LIBC, secret / "libc.so.6")
    public = top / "public"
    public.mkdir(mode=0o755)
    theirs, roots = public / "theirs.so", public / "roots.so"
    theirs.symlink_to(secret / "libc.so.6")
    os.chown(theirs, 65534, 65534, follow_symlinks=False)
    roots.symlink_to(secret / "libc.so.6")
    b, libc = built["prog"], built["libc"]
    for link, why in (
        (theirs, f"{theirs} is a link of another user (nobody), which mem_profiler does not "
                 "follow: name the file it leads to, if that is the one you mean. Its frames "
                 "stay unresolved."),
        (roots, f"{roots} is not readable by the owner of HEAP (uid 65534): its frames stay "
                "unresolved."),
    ):  # fmt: skip
        stacks = [([libc.pc("strdup", LIB_BASE), b.pc("main", PIE_BASE, 8)], 1, MiB)]
        heap = write_heap(tmp_path / f"{link.stem}.heap", b, stacks, library=str(link))
        os.chown(heap, 65534, 65534)
        code, out, err = run_cli(capsys, "-p", b.path, "-f", str(heap), "--collapsed")
        assert code == 0 and re.fullmatch(r"main;\S+\+0x[0-9a-f]+ 1048576\n", out), out
        assert err == f"mem_parser: warning: {why.replace('HEAP', str(heap))}\n"


def test_a_capture_through_another_users_link_is_not_read(tmp_path, capsys):
    """-f through a link another user planted is refused in a sentence that echoes
    nothing of what the link leads to."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root-only first line\n")
    secret.chmod(0o600)
    link = tmp_path / "capture.heap"
    link.symlink_to(secret)
    os.chown(link, 65534, 65534, follow_symlinks=False)
    code, out, err = run_cli(capsys, "-f", str(link), "-t")
    assert (code, out) == (2, "")
    assert err == (
        f"mem_parser: {link} is a link of another user (nobody), which mem_profiler does not "
        "follow: name the file it leads to, if that is the one you mean.\n"
    )


def test_debuglink_to_a_sparse_giant_is_not_read_through(tmp_path, monkeypatch):
    """A debug file grown (sparse) far past its last section is no debug file: its CRC
    is never computed, which would read all of it."""
    nobid = compile_program(tmp_path, PROG_C, "nobid", "-Wl,--build-id=none")
    stripped, debug = tmp_path / "bin" / "nobid", tmp_path / "bin" / "nobid.debug"
    stripped.parent.mkdir()
    split_debug(nobid.path, debug, stripped)
    crcs = []
    real_crc32 = zlib.crc32

    def counted_crc32(data: bytes, crc: int = 0) -> int:
        crcs.append(len(data))
        return real_crc32(data, crc)

    monkeypatch.setattr(zlib, "crc32", counted_crc32)
    assert ElfImage(str(stripped)).debug_path == str(debug)
    assert sum(crcs) == debug.stat().st_size
    crcs.clear()
    os.truncate(debug, 64 << 30)
    assert ElfImage(str(stripped)).debug_path is None
    assert crcs == []


def stripped_rows(out: str, program: str) -> dict[int, str]:
    """The rows of a -t table that name a function of `program` by its start, by it."""
    prefix = f" {program}+0x"
    return {int(row.rsplit(prefix, 1)[1], 16): row for row in out.splitlines() if prefix in row}


def test_stripped_executable_names_its_functions_by_their_starts(built, tmp_path, capsys):
    """With no symbols, each address is shown as the start of the function holding it by
    .eh_frame: exactly the starts the unstripped build's symbols give, one row a
    function."""
    b = built["prog"]
    stripped = tmp_path / "prog"
    subprocess.run(["strip", "--strip-all", "-o", stripped, b.path], check=True)
    code, out, err = run_cli(
        capsys, "-p", str(stripped), "-f", str(prog_heap(built, tmp_path)), "-t"
    )
    assert code == 0
    rows = stripped_rows(out, "prog")
    starts = {start: name for name, (start, _) in b.funcs.items()}
    assert {starts.get(start) for start in rows} == {
        "leaf_alloc",
        "grow",
        "walk",
        "hidden_helper",
        "main",
    }
    assert err == (  # walk and main at two places each
        f"mem_parser: warning: {stripped} has no symbol table and no separate debug file"
        " is installed: 7 of its code addresses, in 5 functions, have no name and are"
        " shown as where their function starts, prog+0x… (its debug symbols, or an"
        " unstripped build given with -p, would name them).\n"
    )
    leaf = b.funcs["leaf_alloc"][0]
    assert rows[leaf] == f"     9.0  90.0%  90.0%      9.0  90.0% prog+0x{leaf:x}"
    # main, at its two calls, is one row with all it holds, as when named
    main = b.funcs["main"][0]
    assert rows[main].split()[3:5] == ["10.0", "100.0%"], rows[main]
    assert "strdup\n" in out  # libc is named as before


def test_stripped_executable_naming_what_it_exports_is_warned_of(built, tmp_path, capsys):
    """git and python3 as Debian ships them: stripped, with a few functions exported."""
    b = built["exporting"]
    stripped = tmp_path / "exporting"
    subprocess.run(["strip", "--strip-all", "-o", stripped, b.path], check=True)
    heap = prog_heap(built, tmp_path, "exporting")
    code, out, err = run_cli(capsys, "-p", str(stripped), "-f", str(heap), "-t")
    assert code == 0
    starts = {start: name for name, (start, _) in b.funcs.items()}
    unnamed = {starts.get(start) for start in stripped_rows(out, "exporting")}
    assert unnamed == {"leaf_alloc", "grow", "hidden_helper", "main"}
    assert err == (
        f"mem_parser: warning: {stripped} has no symbol table and no separate debug file"
        " is installed: 5 of its code addresses, in 4 functions, have no name and are"
        " shown as where their function starts, exporting+0x… (its debug symbols, or an"
        " unstripped build given with -p, would name them).\n"
    )
    assert "% walk\n" in out


SQL = "create table t(a); insert into t select randomblob(100) from generate_series(1,10000);"


@pytest.mark.parametrize(
    "package, argv, unwind",
    [
        ("sqlite3", ["/usr/bin/sqlite3", ":memory:", SQL], "libunwind"),
        # Rust built without frame pointers: the default unwinder follows its .eh_frame
        # (a frame-pointer walk would take stale stack slots for frames)
        ("ripgrep", ["/usr/bin/rg", "-c", "import", str(ROOT / "tests")], "hybrid"),
    ],
)
def test_real_stripped_debian_program(
    tmp_path, capsys, clean_env, sampler_built, package, argv, unwind
):
    program = argv[0]
    if not os.path.exists(program):
        pytest.fail(
            f"the Debian package {package} is not installed: run the tests with `make test`"
        )
    proc, files = profile_run(argv, tmp_path / "s_", 1024, "--unwind", unwind, timeout=60)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    code, out, err = run_cli(capsys, "-p", program, "-f", str(files[0]), "-t", "--alloc_space")
    assert code == 0
    warned = re.fullmatch(
        f"mem_parser: warning: {program} has no symbol table and no separate debug file is"
        r" installed: (\d+) of its code addresses, in (\d+) functions, have no name and are"
        rf" shown as where their function starts, {os.path.basename(program)}\+0x…"
        r" \(its debug symbols, or an unstripped build given with -p, would name them\).\n",
        err,
    )
    assert warned, err
    # against another capture, whose count of unnamed addresses is its own: warned once
    base_proc, base = profile_run(argv, tmp_path / "b_", 1024, "--unwind", unwind, timeout=60)
    assert base_proc.returncode == 0 and len(base) == 1, base_proc.stderr
    code, _, diff_err = run_cli(
        capsys, "-p", program, "-f", str(files[0]), "--base", str(base[0]), "-t"
    )
    assert code == 0 and diff_err.count("has no symbol table") == 1, diff_err
    names = [line.split()[-1] for line in out.splitlines()[1:]]
    with open(program, "rb") as f:
        code_seg = next(
            s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD" and s["p_flags"] & 1
        )
    label = os.path.basename(program) + "+0x"
    ours = [int(n[len(label) :], 16) for n in names if n.startswith(label)]
    assert 0 < len(set(ours)) <= int(warned[2])  # -t shows those with a share, not all
    assert all(code_seg["p_vaddr"] <= a < code_seg["p_vaddr"] + code_seg["p_memsz"] for a in ours)
    # each is where a function starts by binutils' reading of the program's FDEs
    frames = subprocess.run(
        ["readelf", "--debug-dump=frames", program], capture_output=True, text=True
    ).stdout
    starts = {int(pc, 16) for pc in re.findall(r" FDE cie=\w+ pc=([0-9a-f]+)\.\.", frames)}
    assert set(ours) <= starts, sorted(set(ours) - starts)
    assert {"malloc", "realloc", "calloc"}.isdisjoint(names)
    assert any(not n.startswith((label, "0x")) for n in names), names  # libc's are named


def test_libc_is_named_from_its_debian_debug_file(built, tmp_path):
    libc = ElfImage(LIBC)
    if libc.debug_path is None:
        pytest.fail("libc6-dbg is not installed: run the tests with `make test`")
    assert libc.build_id is not None
    assert libc.debug_path == (
        f"/usr/lib/debug/.build-id/{libc.build_id[:2]}/{libc.build_id[2:]}.debug"
    )
    with open(libc.debug_path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        local = next(s for s in symtab.iter_symbols() if s.name == "__libc_start_call_main")
    assert "__libc_start_call_main" not in built["libc"].funcs  # not in libc.so.6's .dynsym
    b = built["prog"]
    call = LIB_BASE + local["st_value"] + 0x10
    heap = write_heap(tmp_path / "l.heap", b, [([b.pc("leaf_alloc", PIE_BASE), call + 1], 1, 64)])
    sym = symbolize(read_heap(heap), b.path, lines=True)
    frame = sym.stack(0, lines=True)[-1]
    where = subprocess.run(
        ["addr2line", "-e", LIBC, hex(call - LIB_BASE)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    name, place = frame.split(" ")
    assert name == "__libc_start_call_main"
    # The function is defined in a header that libc-start.c includes (objdump's line table
    # says so; binutils 2.40's addr2line names the including file): compare the line only.
    assert re.fullmatch(r"(?:.*/)?sysdeps/nptl/libc_start_call_main\.h:[1-9]\d*", place)
    assert place.rsplit(":", 1)[1] == where.rsplit(":", 1)[1]


def test_reads_and_names_a_real_jemalloc_dump(built, tmp_path):
    prog = built["prog"]
    conf = f"prof:true,prof_final:true,lg_prof_sample:0,prof_prefix:{tmp_path}/je"
    subprocess.run(
        [prog.path], env=dict(os.environ, LD_PRELOAD=LIBJEMALLOC, MALLOC_CONF=conf), check=True
    )
    dump = read_heap(next(tmp_path.glob("je.*.heap")))
    assert dump.rate == 1 and dump.exe is None
    sym = symbolize(dump, prog.path)  # no exe line: the mapping named like -p is the program
    stacks = [sym.stack(i) for i in range(len(dump.stacks))]
    ours = [s[s.index("leaf_alloc") :] for s in stacks if "leaf_alloc" in s]
    assert ["leaf_alloc", "grow", "walk", "walk", "walk", "walk", "main"] in [s[:7] for s in ours]


def test_build_id_mismatch_is_refused(built, tmp_path, capsys):
    heap = prog_heap(built, tmp_path)
    variant, prog = built["variant"], built["prog"]
    assert variant.build_id != prog.build_id
    with pytest.raises(BuildIdMismatch):
        symbolize(read_heap(heap), variant.path)
    code, out, err = run_cli(capsys, "-p", variant.path, "-f", str(heap), "-t")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("mem_parser: ")
    assert variant.build_id in err and prog.build_id in err and "--allow-mismatch" in err
    code, out, err = run_cli(capsys, "-p", variant.path, "-f", str(heap), "-t", "--allow-mismatch")
    assert code == 0 and out.startswith("Total: 10.0 MB\n")
    assert err.startswith("mem_parser: warning: ") and variant.build_id in err


def test_shared_object_of_another_build_warns(built, tmp_path, capsys):
    prog = built["prog"]
    heap = prog_heap(built, tmp_path, build_ids={prog.path: prog.build_id, LIBC: "deadbeef"})
    code, out, err = run_cli(capsys, "-p", prog.path, "-f", str(heap), "-t")
    assert code == 0 and "strdup" in out
    assert err.startswith("mem_parser: warning: ") and "deadbeef" in err
    assert built["libc"].build_id in err


def test_symbols_are_cached_and_corrupt_entries_rebuilt(built, tmp_path, symbol_cache):
    heap = read_heap(prog_heap(built, tmp_path))
    first = symbolize(heap, built["prog"].path, lines=True)
    entries = sorted(symbol_cache.iterdir())
    ids = {e.name.split(".")[0] for e in entries}
    assert {built["prog"].build_id, built["libc"].build_id} <= ids
    for i, entry in enumerate(entries):  # garbage, or an entry cut short
        whole = entry.read_bytes()
        entry.write_bytes(b"not an entry" if i % 2 else whole[: len(whole) // 2])
    again = symbolize(heap, built["prog"].path, lines=True)
    assert [again.stack(i, lines=True) for i in range(3)] == [
        first.stack(i, lines=True) for i in range(3)
    ]
    assert all(symcache.read_arrays(e) is not None for e in symbol_cache.iterdir())


def test_symbol_names_read_back_from_the_cache(built, symbol_cache):
    """libc's table as its ELF file gives it and as the cache gives it back: the same
    functions at the same addresses, under the same names (malloc, not __libc_malloc)."""
    path = built["libc"].path
    fresh = ElfImage(path).symbols()
    assert any(symbol_cache.iterdir())
    cached = ElfImage(path).symbols()
    assert len(fresh.names) > 1000
    assert list(cached.names) == list(fresh.names)
    assert np.array_equal(cached.starts, fresh.starts)
    assert np.array_equal(cached.ends, fresh.ends)
    start = built["libc"].funcs["malloc"][0]
    (index,) = cached.lookup(np.array([start], np.uint64))
    assert cached.names[index] == "malloc"


def test_a_fifo_in_place_of_an_entry_is_not_waited_on(built, symbol_cache):
    """A FIFO where an entry belongs (planted, or left by a mistake) reads as no entry:
    the names are read from the ELF file, in a process that ends on its own, and the
    entry written anew replaces it."""
    path = built["libc"].path
    ElfImage(path).symbols()
    (entry,) = list(symbol_cache.iterdir())
    entry.unlink()
    os.mkfifo(entry)
    script = (
        "import sys; from mem_profiler.parser.elf.image import ElfImage; "
        "print(ElfImage(sys.argv[1]).symbols().names[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, path], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ElfImage(path).symbols().names[0]
    assert entry.is_file() and symcache.read_arrays(entry) is not None


def _cached_arrays(entry: Path) -> dict[str, np.ndarray]:
    arrays = symcache.read_arrays(entry)
    assert arrays is not None, entry
    return arrays


def test_cached_names_outside_their_text_are_read_again(built, symbol_cache):
    """A cache entry whose names would lie past the string table it saved is not
    trusted: the table is read from the ELF file again, with the same names."""
    path = built["libc"].path
    fresh = ElfImage(path).symbols()
    (entry,) = [e for e in symbol_cache.iterdir() if "text_ends" in _cached_arrays(e)]
    arrays = _cached_arrays(entry)
    arrays["text_ends"] += len(arrays["text"])
    symcache.write_arrays(entry, arrays)
    again = ElfImage(path).symbols()
    assert list(again.names) == list(fresh.names)
    rewritten = _cached_arrays(entry)
    assert int(rewritten["text_ends"].max()) <= len(rewritten["text"])


def test_bad_binaries_are_user_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    elfish = tmp_path / "broken"
    elfish.write_bytes(b"\x7fELF" + b"\0" * 20)
    for path, what in [
        (tmp_path / "nope", "does not exist"),
        (tmp_path, "is a directory"),
        (text, "is not an ELF binary"),
        (elfish, "is not a valid ELF binary"),
    ]:
        with pytest.raises(ElfError, match=what):
            ElfImage(str(path))


@pytest.mark.parametrize(
    "args, content, expect",
    [
        ("-p {prog} -f {bad} -t", "empty", "{bad}:1: the file is empty"),
        ("-p {prog} -f {bad} -t", "truncated", "{bad}:17: the file is truncated"),
        (
            "-p {prog} -f {bad} -t",
            "garbled",
            "{bad}:11: expected a counter line after the stack on line 10",
        ),
        ("-p {dir}/nope -f {heap} -t", None, "{dir}/nope does not exist"),
        ("-p {prog} -f {dir} -t", None, "{dir} is a directory"),
        ("-p {dir} -f {heap} -t", None, "{dir} is a directory"),
        ("-p {heap} -f {heap} -t", None, "{heap} is not an ELF binary"),
        ("-p {prog} -f {heap} -t -s", None, "choose one output"),
        ("-p {prog} -f {heap} -t --alloc_space --inuse_objects", None, "one sample index"),
        # without -p, the program the file names must still be there
        (
            "-f {bad} -t",
            "moved",
            "{dir}/gone, the program that ran, is no longer there: give a copy of it with -p BIN"
            " (or its machine's root file system with --sysroot DIR).",
        ),
    ],
)
def test_cli_user_errors_are_one_line(built, tmp_path, capsys, args, content, expect):
    heap = prog_heap(built, tmp_path)
    good = heap.read_text()
    bad = tmp_path / "bad.heap"
    bad.write_text(
        {
            "empty": "",
            "truncated": good.split("MAPPED_LIBRARIES:")[0],
            "garbled": good.replace("[6: 6291456]", "[6: 6291456"),
            "moved": good.replace(built["prog"].path, f"{tmp_path}/gone"),
        }.get(content, good)
    )
    names = {"prog": built["prog"].path, "bad": bad, "heap": heap, "dir": tmp_path}
    code, out, err = run_cli(capsys, *args.format(**names).split())
    assert (code, out) == (2, "")
    assert err.startswith("mem_parser: ") and err.count("\n") == 1, err
    assert expect.format(**names) in err and "Traceback" not in err


def test_console_script_error_has_no_traceback(tmp_path):
    done = subprocess.run(
        [MEM_PARSER, "-p", str(tmp_path), "-f", str(tmp_path), "-t"], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("mem_parser: ") and done.stderr.count("\n") == 1


def test_jeprof_ranks_the_same_functions(built, tmp_path):
    b = built["prog"]
    stacks = [  # distinct flat values so that the ranking has no ties
        (
            [b.pc("leaf_alloc", PIE_BASE), b.pc("grow", PIE_BASE), b.pc("main", PIE_BASE)],
            40,
            40 * 65536,
        ),
        (
            [b.pc("walk", PIE_BASE, 20), b.pc("walk", PIE_BASE, 30), b.pc("main", PIE_BASE)],
            25,
            25 * 4096,
        ),
        ([b.pc("hidden_helper", PIE_BASE), b.pc("main", PIE_BASE)], 70, 70 * 300),
    ]
    heap = write_heap(tmp_path / "j.heap", b, stacks, rate=1024)
    ours = subprocess.run(
        [MEM_PARSER, "-p", b.path, "-f", heap, "-t"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    theirs = subprocess.run(
        ["jeprof", "--text", b.path, heap], capture_output=True, text=True, check=True
    ).stdout.splitlines()

    def flat_ranking(lines: list[str]) -> list[str]:
        return [line.split()[-1] for line in lines[1:] if float(line.split()[0]) > 0]

    assert flat_ranking(ours) == flat_ranking(theirs) == ["leaf_alloc", "walk", "hidden_helper"]
    assert ours[0] == theirs[0]  # Total: 2.6 MB
    assert {tuple(line.split()) for line in ours[1:]} == {
        tuple(line.split()) for line in theirs[1:]
    }


RUST_SOURCE = FIXTURES / "rust_widgets.rs"
RUST_PAGES = 100  # build_table's vectors: 1000 + i bytes for i < RUST_PAGES


@pytest.mark.parametrize(
    "mangling, symbol_re, names",
    [
        (
            "v0",
            r"_RNv.*build_table",
            {
                "widgets::build_table": RUST_PAGES * 1000
                + sum(range(RUST_PAGES))
                + RUST_PAGES * 24,
                "<widgets::Widget>::grow": 2000 * 8,
                "widgets::copy_of": 5000 * 4,
                "<widgets::Widget as core::fmt::Display>::fmt": 3000,
            },
        ),
        (
            "legacy",
            r"_ZN7widgets11build_table17h[0-9a-f]{16}E",
            {
                "widgets::build_table": RUST_PAGES * 1000
                + sum(range(RUST_PAGES))
                + RUST_PAGES * 24,
                "widgets::Widget::grow": 2000 * 8,
                "widgets::copy_of": 5000 * 4,
                "<widgets::Widget as core::fmt::Display>::fmt": 3000,
            },
        ),
    ],
)
def test_rust_program_names(tmp_path, clean_env, sampler_built, mangling, symbol_re, names):
    rustc = shutil.which("rustc")
    if rustc is None:
        pytest.skip("rustc is not on PATH (`make test` installs Debian's rustc)")
    exe = tmp_path / "widgets"
    flags = ["-C", "symbol-mangling-version=v0"] if mangling == "v0" else []
    subprocess.run(
        [
            rustc,
            "-g",
            "-C",
            "force-frame-pointers=yes",
            *flags,
            "--crate-name",
            "widgets",
            "-o",
            exe,
            RUST_SOURCE,
        ],
        check=True,
    )
    assert any(re.fullmatch(symbol_re, n) for n in load_binary(str(exe)).funcs)
    # every allocation (-c 1); frame pointers: libunwind may hang in Rust programs
    proc, files = profile_run([exe, RUST_PAGES], tmp_path / "r_", 1, "--unwind", "fp", timeout=60)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    done = subprocess.run(
        [MEM_PARSER, "-p", exe, "-f", files[0], "--json", "--alloc_space"],
        capture_output=True,
        text=True,
        check=True,
    )
    cum = {row["name"]: row["cum"] for row in json.loads(done.stdout)["rows"]}
    assert {name: cum.get(name) for name in names} == names
    assert not any(re.search(r"::h[0-9a-f]{16}$|\[[0-9a-f]+\]|__rust_alloc", n) for n in cum)
    full = subprocess.run(
        [MEM_PARSER, "-p", exe, "-f", files[0], "--collapsed", "--full-names", "--alloc_space"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    hashed = (
        r"widgets\[[0-9a-f]{16}\]::copy_of::<u32>"
        if mangling == "v0"
        else r"widgets::copy_of::h[0-9a-f]{16}"
    )
    assert re.search(rf"(^|;){hashed};", full, re.M), full


@pytest.mark.parametrize(
    "full, short",
    [
        ("std::rt::lang_start::h0123456789abcdef", "std::rt::lang_start"),
        (
            "<alloc[fdfd2bd8633a6659]::raw_vec::RawVec<alloc[fdfd2bd8633a6659]::vec::Vec<u8>>>::grow_one",
            "<alloc::raw_vec::RawVec>::grow_one",
        ),
        (
            "core[4c2faf61c2d5dfd7]::ptr::drop_in_place::<alloc[fdfd2bd8633a6659]::vec::Vec<u8>>",
            "core::ptr::drop_in_place",
        ),
        (
            "<u32 as <[_]>::to_vec_in::ConvertVec>::to_vec"
            "::<alloc[fdfd2bd8633a6659]::alloc::Global>",
            "<u32 as <[_]>::to_vec_in::ConvertVec>::to_vec",
        ),
        ("<<a::B as a::C>::D as a::E>::f::h0123456789abcdef", "<<a::B as a::C>::D as a::E>::f"),
        (
            "widgets[e3453f6ecb86abf2]::build_table::{closure#0}",
            "widgets::build_table::{closure#0}",
        ),
    ],
)
def test_rust_short_names(full, short):
    assert short_name(full) == short


INLINED_SOURCE = FIXTURES / "inlined.c"


def test_inlined_calls_are_frames_in_every_report(tmp_path, clean_env, sampler_built):
    exe = tmp_path / "inlined"
    subprocess.run(
        ["gcc", "-g", "-O2", "-fno-omit-frame-pointer", "-o", exe, INLINED_SOURCE], check=True
    )
    proc, files = profile_run([exe], tmp_path / "i_", 1)  # N = 1000: every allocation
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    heap = files[0]
    src = INLINED_SOURCE.read_text().splitlines()
    at = {
        m[1]: f"{INLINED_SOURCE}:{n}"
        for n, text in enumerate(src, 1)
        if (m := re.search(r"/\* line:([\w-]+) \*/", text))
    }

    def report(*args: str | Path) -> str:
        return subprocess.run(
            [MEM_PARSER, "-p", exe, "-f", heap, *args], capture_output=True, text=True, check=True
        ).stdout

    rows = {row["name"]: (row["flat"], row["cum"]) for row in json.loads(report("--json"))["rows"]}
    assert {name: rows[name] for name in ("fill", "make_block", "helper", "outer")} == {
        "fill": (2000, 2000),
        "make_block": (0, 2000),
        "helper": (1001, 1001),
        "outer": (0, 3001),
    }
    text = report("-t", "--lines")
    for name, where in [
        ("fill", "fill"),
        ("make_block", "make_block"),
        ("helper", "helper"),
        ("outer", "outer"),
        ("outer", "outer-helper"),
    ]:
        assert re.search(rf" {name} {re.escape(at[where])}$", text, re.M), (name, text)
    collapsed = dict(line.rsplit(" ", 1) for line in report("--collapsed").splitlines())
    assert {key.split(";main;", 1)[1]: int(value) for key, value in collapsed.items()} == {
        "outer;make_block;fill": 2000,
        "outer;helper": 1001,
    }
    lines = report("--collapsed", "--lines")
    assert f";outer {at['outer']};make_block {at['make_block']};fill {at['fill']} 2000\n" in lines
    svg = report("-s")  # edges' tooltips: `caller -> callee (bytes)`
    assert "outer &#45;&gt; make_block (" in svg and "make_block &#45;&gt; fill (" in svg
    flame = tmp_path / "f.html"
    report("--flame", flame)
    assert '"make_block"' in flame.read_text()

    pb = tmp_path / "p.pb.gz"
    report("--pprof", pb)
    home = tmp_path / "gohome"
    raw = subprocess.run(
        ["go", "tool", "pprof", "-raw", pb],
        capture_output=True,
        text=True,
        check=True,
        env=dict(
            os.environ,
            HOME=str(home),
            GOPROXY="off",
            GOTOOLCHAIN="local",
            GOCACHE=str(home / "c"),
            PPROF_TMPDIR=str(home),
        ),
    ).stdout
    # one Location, three Lines, innermost first (profile.proto)
    assert re.search(
        rf"M=1 fill {re.escape(at['fill'])} s=0\n +make_block "
        rf"{re.escape(at['make_block'])} s=0\n +outer {re.escape(at['outer'])} s=0\n",
        raw,
    ), raw
