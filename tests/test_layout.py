"""The shape of the Python package, read from its sources: which parts may import which
(docs/development.md, "Source layout"), no import cycles, a light core, and top-level
folders that never shadow the standard library for Python run from the checkout."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.graphs import cycles

ROOT = Path(__file__).resolve().parent.parent
# The folders of the package, as pyproject.toml maps them.
PACKAGE_DIRS = {
    "mem_profiler": ROOT / "bindings",
    "mem_profiler.parser": ROOT / "parser",
    "mem_profiler.cmd": ROOT / "cmd",
}
# The parser's stages, each a folder but the drivers, of a .heap file's reports and of a
# log's (docs/development.md, "Source layout"), in the order the data goes through them:
# each imports only those before it.
STAGES = (
    "common", "read", "elf", "symbols", "model", "log", "report", "pipeline", "log_pipeline",
    "msmemscope",
)  # fmt: skip
HEAVY = ("numpy", "cffi", "elftools", "click", "textual", "graphviz")


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            return True
    return False


def _imports(name: str) -> list[tuple[str, bool]]:
    """The package's modules `name` imports, anywhere in it (lazy imports too), each with
    whether it is imported for type checking only."""
    tree = ast.parse(MODULES[name].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = MODULES[name].name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}".rstrip(".")
            # `from package import module` imports the module; a name, the package
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        typing_only = _type_checking_only(node, parents)
        found += [(t, typing_only) for t in targets if t.split(".")[0] == "mem_profiler"]
    return found


def _part(module: str) -> str:
    """core, parser, cmd, door (mem_profiler.control: what launches, controls, attaches
    to or reads a process; with the core, all the parser may not reach), feature (api,
    gate, top, push, live_view) or root."""
    parts = module.split(".")
    if module == "mem_profiler":
        return "root"
    if parts[1] in ("core", "parser", "cmd"):
        return parts[1]
    return "door" if parts[1] == "control" else "feature"


# What each part may import besides itself.
ALLOWED = {
    "core": set(),
    "parser": {"core"},
    "door": {"core"},
    "root": {"core"},
    "feature": {"core", "parser", "door", "root"},
    "cmd": {"core", "parser", "door", "root", "feature"},
}


def test_the_walk_finds_every_part():
    parts = {_part(m) for m in MODULES}
    assert parts == set(ALLOWED)
    assert sum(len(_imports(m)) for m in MODULES) > 200


def test_each_part_imports_only_what_lies_below_it():
    wrong = [
        f"{name} imports {target}"
        for name in sorted(MODULES)
        for target, _ in _imports(name)
        if _part(target) != _part(name) and _part(target) not in ALLOWED[_part(name)]
    ]
    assert wrong == []


def _stage(module: str) -> str:
    return module.split(".")[2]


def test_the_parser_is_in_folders_by_stage():
    """Every parser module lies in a stage's folder (the drivers alone beside them), and
    each folder opens with what its stage does."""
    parser = [m for m in MODULES if _part(m) == "parser"]
    assert {_stage(m) for m in parser} == set(STAGES)
    beside = sorted(m.rpartition(".")[2] for m in parser if m.count(".") == 2)
    assert beside == sorted(STAGES) and max(m.count(".") for m in parser) == 3
    for stage in set(STAGES) - {"pipeline"}:
        doc = ast.get_docstring(ast.parse(MODULES[f"mem_profiler.parser.{stage}"].read_text()))
        assert doc and len(doc) > 80, stage


def test_each_stage_imports_only_the_stages_before_it():
    wrong = [
        f"{name} imports {target}"
        for name in sorted(MODULES)
        if _part(name) == "parser"
        for target, _ in _imports(name)
        if _part(target) == "parser"
        and target != "mem_profiler.parser"
        and STAGES.index(_stage(target)) > STAGES.index(_stage(name))
    ]
    assert wrong == []


def test_no_import_cycles():
    """Runtime imports, lazy ones included, form no cycle (Tarjan's strongly connected
    components, each of one module)."""
    graph = {
        m: sorted({t for t, typing in _imports(m) if not typing and t in MODULES} - {m})
        for m in MODULES
    }
    assert cycles(graph) == []


def test_a_cycle_or_a_back_edge_is_seen(monkeypatch, tmp_path):
    """The walk is not blind: a planted back-edge and cycle are both found."""
    core = tmp_path / "planted.py"
    core.write_text("from mem_profiler.parser.read import heap_file\n")
    monkeypatch.setitem(MODULES, "mem_profiler.core.planted", core)
    monkeypatch.setitem(MODULES, "mem_profiler.core.units", tmp_path / "units.py")
    (tmp_path / "units.py").write_text("import mem_profiler.core.planted\n")
    with pytest.raises(AssertionError, match="core.planted imports mem_profiler.parser"):
        test_each_part_imports_only_what_lies_below_it()
    reader = tmp_path / "reader.py"
    reader.write_text("from mem_profiler.parser.report.text import format_text\n")
    monkeypatch.setitem(MODULES, "mem_profiler.parser.read.planted", reader)
    with pytest.raises(AssertionError, match="read.planted imports mem_profiler.parser.report"):
        test_each_stage_imports_only_the_stages_before_it()
    core.write_text("from mem_profiler.core import units\n")
    with pytest.raises(AssertionError, match="planted"):
        test_no_import_cycles()


def test_the_core_imports_nothing_heavy(tmp_path):
    core = sorted(m for m in MODULES if _part(m) == "core")
    probe = (
        f"import sys; import {', '.join(core)}; print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "code",
    [
        "import pdb, cmd; assert cmd.Cmd",
        "from mem_profiler.parser.msmemscope import analyzers; import cmd; assert cmd.Cmd",
    ],
)
def test_the_checkout_shadows_no_standard_module(code):
    """Python run from the repository root (its folder first on sys.path) finds the
    standard library's `cmd`, and the package's own modules still import."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_pytest_with_pdb_runs_from_the_checkout():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pdb",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_layout.py::test_the_walk_finds_every_part",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def _layout_rows() -> dict[str, str]:
    """docs/development.md's "Source layout" table: each folder's row, by its folder."""
    text = (ROOT / "docs" / "development.md").read_text()
    return {m[1]: m[2] for m in re.finditer(r"^\| `([\w/]+/)` \|(.*)$", text, re.MULTILINE)}


def _unnamed_in_layout(files: list[Path], rows: dict[str, str]) -> list[str]:
    """The files the row of their folder (the deepest one the table has) does not name,
    in backticks, by their module's name or their file's."""
    missing = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        folder = max((f for f in rows if relative.startswith(f)), key=len, default=None)
        names = {f"`{path.stem}`", f"`{path.name}`"}
        if folder is None or not any(name in rows[folder] for name in names):
            missing.append(relative)
    return missing


def test_the_layout_table_names_every_module_and_c_file():
    """Each module of the package and each C file of the sampler is named in its folder's
    row of the layout table: the table is drawn from the code, not from memory."""
    rows = _layout_rows()
    modules = [p for p in MODULES.values() if p.name != "__init__.py"]
    c_files = sorted((ROOT / "sampler").glob("*/*.c"))
    assert len(modules) > 100 and len(c_files) > 40
    assert _unnamed_in_layout(modules + c_files, rows) == []
    planted = ROOT / "bindings" / "control" / "planted_door.py"
    assert _unnamed_in_layout([planted], rows) == ["bindings/control/planted_door.py"]
