"""The sampler's layers, read from its code (ARCHITECTURE.md, "The sampler's layers"):
each .c file is compiled to an object, and the symbols it leaves undefined that another
file of the sampler defines (`nm`) are its calls and reads; no file reaches into a
layer above its own, by a call or an #include, and no cycle of calls takes in more than
three files. jemalloc's prof_* modules keep the same rule: what a lower layer needs of
a higher one it is given at start-up (base/upcalls.h), never calls by name."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.graphs import cycles
from support.paths import ROOT

SAMPLER = ROOT / "sampler"
# Lowest first: a file may use its own layer and those before it.
LAYERS = ["base", "tables", "unwind", "writers", "sample", "control", "hooks"]
# A cycle of calls (a strongly connected component) may hold this many files at most.
MOST_IN_A_CYCLE = 3
CFLAGS = ["-std=c11", "-O0", "-fPIC", "-D_GNU_SOURCE", "-pthread", "-DMEMPROF_LIBUNWIND"]


def _layer(name: str) -> str:
    """The layer of a file named by its path under sampler/ without suffix."""
    return name.split("/")[0]


def _compile(source: Path, out_dir: Path) -> Path:
    obj = out_dir / (source.relative_to(source.parents[1]).as_posix().replace("/", "__") + ".o")
    subprocess.run(
        ["gcc", *CFLAGS, f"-I{SAMPLER}", "-c", str(source), "-o", str(obj)],
        check=True,
        capture_output=True,
    )
    return obj


def _symbols(obj: Path) -> tuple[set[str], set[str]]:
    """What the object defines, and what it leaves undefined."""
    defined, undefined = set(), set()
    for line in subprocess.check_output(["nm", str(obj)], text=True).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "BCDGRSTVW":
            defined.add(parts[2])
    return defined, undefined


def _c_library_names() -> set[str]:
    """The C library's exports: a sampler file calling pthread_sigmask calls the
    program's (interposed, perhaps by another file of ours), not a layer of ours."""
    libc = subprocess.check_output(["gcc", "-print-file-name=libc.so.6"], text=True).strip()
    out = subprocess.check_output(["nm", "-D", "--defined-only", libc], text=True)
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def call_graph(objects: dict[str, Path]) -> dict[str, dict[str, set[str]]]:
    """file -> {file it calls or reads -> the symbols}, for files named like
    "tables/stack_table"."""
    symbols = {name: _symbols(obj) for name, obj in objects.items()}
    owner = {sym: name for name, (defined, _) in symbols.items() for sym in defined}
    libc = _c_library_names()
    graph: dict[str, dict[str, set[str]]] = {name: {} for name in objects}
    for name, (_, undefined) in symbols.items():
        for sym in undefined - libc:
            target = owner.get(sym)
            if target is not None and target != name:
                graph[name].setdefault(target, set()).add(sym)
    return graph


def upward(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """Every edge from a file into a layer above its own."""
    return [
        f"{name} -> {target}: {', '.join(sorted(syms))}"
        for name, targets in sorted(graph.items())
        for target, syms in sorted(targets.items())
        if LAYERS.index(_layer(target)) > LAYERS.index(_layer(name))
    ]


def upward_includes(files: list[Path], root: Path = SAMPLER) -> list[str]:
    """Every #include of a header in a layer above the including file's (its first
    folder under `root`)."""
    wrong = []
    for path in files:
        name = path.relative_to(root)
        for folder, header in re.findall(r'#include "(\w+)/([\w.]+)"', path.read_text()):
            if folder in LAYERS and LAYERS.index(folder) > LAYERS.index(name.parts[0]):
                wrong.append(f"{name} includes {folder}/{header}")
    return wrong


def _sources() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (SAMPLER / layer).glob("*.c"))


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    out = tmp_path_factory.mktemp("layout_objects")
    sources = _sources()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objects = list(pool.map(lambda s: _compile(s, out), sources))
    names = [s.relative_to(SAMPLER).with_suffix("").as_posix() for s in sources]
    return call_graph(dict(zip(names, objects, strict=True)))


def test_every_folder_is_a_layer():
    """A folder added to sampler/ is given its place in LAYERS (the Makefile's
    SAMPLER_LAYERS lists the same, in the same order); no C file is left at its root."""
    folders = {p.name for p in SAMPLER.iterdir() if p.is_dir()} - {"arch"}
    assert folders == set(LAYERS)
    assert sorted(SAMPLER.glob("*.c")) == []
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^SAMPLER_LAYERS\s*:=\s*(.*)$", makefile, re.MULTILINE)
    assert listed is not None and listed[1].split() == LAYERS


def test_the_walk_sees_the_calls(graph):
    assert len(graph) == len(_sources()) > 30
    assert sum(len(targets) for targets in graph.values()) > 150
    assert "hooks/hooks_malloc" in graph and "sample/sample" in graph["hooks/hooks_malloc"]


def test_no_file_calls_into_a_higher_layer(graph):
    assert upward(graph) == []


def test_no_file_includes_a_higher_layers_header():
    headers = sorted(p for layer in LAYERS for p in (SAMPLER / layer).glob("*.h"))
    assert upward_includes(_sources() + headers) == []


def test_no_cycle_of_more_than_three_files(graph):
    assert [c for c in cycles(graph) if len(c) > MOST_IN_A_CYCLE] == []


def test_a_planted_upward_call_or_cycle_is_seen(graph, tmp_path):
    """The walk is not blind: a base file that calls the process's set-up, and includes
    its header, is found by the same compile and nm; so is a cycle of four files."""
    planted = tmp_path / "base" / "planted.c"
    planted.parent.mkdir()
    planted.write_text(
        '#include "hooks/process.h"\nvoid memprof_planted(void) { memprof_process_set_up(); }\n'
    )
    objects = {
        "base/planted": _compile(planted, tmp_path),
        "hooks/process": _compile(SAMPLER / "hooks" / "process.c", tmp_path),
    }
    assert upward(call_graph(objects)) == ["base/planted -> hooks/process: memprof_process_set_up"]
    assert upward_includes([planted], root=tmp_path) == ["base/planted.c includes hooks/process.h"]

    ring = ["tables/estimate", "tables/hash_index", "tables/live_table", "tables/notes"]
    planted_ring = {name: dict(targets) for name, targets in graph.items()}
    for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
        planted_ring[a][b] = {"memprof_planted"}
    assert upward(planted_ring) == []
    too_large = [c for c in cycles(planted_ring) if len(c) > MOST_IN_A_CYCLE]
    assert len(too_large) == 1 and set(ring) <= set(too_large[0])


def test_the_heaps_are_the_same_in_c_and_python():
    """enum memprof_heap (base/common.h), the writer's names of the heaps and the
    package's HEAPS list the same heaps in the same order: a new allocator family's
    heap is added to all three or the test says which lacks it."""
    from mem_profiler.core.heaps import HEAP_HUES, HEAPS, TIMELINE_COLORS

    common = (SAMPLER / "base" / "common.h").read_text()
    enum = re.search(r"enum memprof_heap \{(.*?)\};", common, re.DOTALL)
    assert enum is not None
    members = re.findall(r"^\s*HEAP_(\w+)", enum[1], re.MULTILINE)
    assert members[-1] == "COUNT"
    writer = (SAMPLER / "writers" / "heap_writer.c").read_text()
    named = dict(re.findall(r'\[HEAP_(\w+)\] = "(\w+)"', writer))
    assert [m.lower() for m in members[:-1]] == list(HEAPS)
    assert [named.get(m) for m in members[:-1]] == list(HEAPS)
    assert set(HEAP_HUES) == set(TIMELINE_COLORS) == set(HEAPS)
