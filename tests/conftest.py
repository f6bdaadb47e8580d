"""The fixtures the test files share; their helpers are in tests/support/."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from standins.build import INCLUDE, build_standins
from support.once import built_once
from support.paths import FIXTURES, LIBMEMPROF
from support.profiling import SITES_EXACT, profile_run
from support.reports import go_environment
from support.targets import Server

FIXTURE_CFLAGS = ["-g", "-O1", "-fno-omit-frame-pointer", "-fno-inline", "-pthread"]


@pytest.hookimpl(trylast=True)  # after -m has deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In a parallel run, each module marked `long` (its tests take minutes of CPU, one
    of them a minute or more) goes first in one worker's share. pytest-xdist's worksteal
    deals the collection out in runs of len // workers and later moves only the ends of
    those runs: a long test in the middle of one started late and left the other
    workers idle at the end of the run."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        if item.get_closest_marker("long"):
            modules.setdefault(item.path, []).append(item)
    rest = [item for item in items if not item.get_closest_marker("long")]
    firsts: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for i, module in enumerate(modules.values()):
        firsts[i % workers] += module
    ordered: list[pytest.Item] = []
    for share in range(workers):  # the runs worksteal deals, in its arithmetic
        size = (len(items) - len(ordered)) // (workers - share)
        taken = max(0, size - len(firsts[share]))
        ordered += firsts[share] + rest[:taken]
        del rest[:taken]
    items[:] = ordered + rest


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all the workers of this run share (pytest-xdist gives each worker a
    folder of its own under it), for what is built once per run."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def sampler_built() -> None:
    if not LIBMEMPROF.is_file():
        pytest.fail("build/libmemprof.so is missing: run the tests with `make test`")


@pytest.fixture(scope="session")
def build_fixture(run_folder: Path, sampler_built: None):
    """Compile tests/fixtures/<name>.c[pp] once per run, whichever worker asks first;
    returns the binary's path."""

    def build(
        name: str,
        *extra: str,
        shared: bool = False,
        output: str | None = None,
        libs: tuple[str, ...] = (),
    ) -> Path:
        """`extra`: flags before the source; `libs`: what it links after it."""
        source = next(FIXTURES.glob(f"{name}.c*"))
        compiler = "g++" if source.suffix == ".cpp" else "gcc"
        flags = FIXTURE_CFLAGS + (["-shared", "-fPIC"] if shared else []) + list(extra)
        file_name = output or (f"lib{name}.so" if shared else name)
        with built_once(run_folder / "fixtures", [name, compiler, *flags, file_name, *libs]) as (
            folder,
            done,
        ):
            out = folder / file_name
            if not done:
                argv = [compiler, *flags, "-o", str(out), str(source), *libs, "-ldl"]
                subprocess.run(argv, check=True)
        return out

    return build


@pytest.fixture(scope="session")
def log_steps_exe(build_fixture, standin_dir: Path) -> Path:
    """tests/fixtures/log_steps.c, linked against the mstx and NVTX stand-ins."""
    build_standins(standin_dir)
    return build_fixture(
        "log_steps",
        f"-I{INCLUDE}",
        f"-L{standin_dir}",
        "-Wl,--no-as-needed",
        "-l:libmstx.so",
        "-l:libnvToolsExt.so.1",
        f"-Wl,-rpath,{standin_dir}",
    )


@pytest.fixture(scope="session")
def go_build(run_folder: Path):
    """Build tests/fixtures/go/<name>.go once per run, with cgo or without; returns the
    program's path."""
    (run_folder / "go").mkdir(exist_ok=True)
    env = go_environment(run_folder / "go")

    def build(name: str, cgo: bool) -> Path:
        with built_once(run_folder / "go", [name, str(cgo)]) as (folder, done):
            out = folder / f"{name}{'_cgo' if cgo else ''}"
            if not done:
                subprocess.run(
                    ["go", "build", "-o", str(out), str(FIXTURES / "go" / f"{name}.go")],
                    env=dict(env, CGO_ENABLED="1" if cgo else "0"),
                    check=True,
                    timeout=300,
                )
        return out

    return build


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MEMPROF_* or LD_PRELOAD leaking in from the caller's environment."""
    for key in list(os.environ):
        if key.startswith("MEMPROF_") or key == "LD_PRELOAD":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def counting_preload(build_fixture) -> Path:
    """The tests' truth for allocations (tests/fixtures/counting_preload.c, support/counting.py)."""
    return build_fixture("counting_preload", "-O2", shared=True)


@pytest.fixture(scope="session")
def sites_exact(build_fixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sites fixture and the .heap of one run recording every allocation (-c 1)."""
    exe = build_fixture("sites")
    proc, files = profile_run([exe, *SITES_EXACT], tmp_path_factory.mktemp("exact") / "x_", 1)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    return exe, files[0]


@pytest.fixture(scope="module")
def server_exe(build_fixture):
    """tests/fixtures/server.c, copied where every user can read it: one test runs it as
    another user."""
    folder = Path(tempfile.mkdtemp(prefix="memprof-server-"))
    folder.chmod(0o755)
    exe = folder / "server"
    shutil.copy2(build_fixture("server"), exe)
    exe.chmod(0o755)
    yield exe
    shutil.rmtree(folder)


@pytest.fixture
def server(server_exe):
    """The server running with the sampler loaded and idle."""
    s = Server(server_exe)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def standin_dir(run_folder: Path) -> Path:
    """Where the stand-in libraries and device fixtures are built, once per run for all
    the workers: build_standins builds one at a time and only what is not built yet
    (3.8 CPU-s for the libraries, which every module and worker built anew)."""
    return run_folder / "standins"
