"""The fixtures the test files share; their helpers are in tests/support/."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from standins.build import INCLUDE, build_standins
from support.paths import FIXTURES, LIBMEMPROF
from support.profiling import SITES_EXACT, profile_run
from support.reports import go_environment
from support.targets import Server

FIXTURE_CFLAGS = ["-g", "-O1", "-fno-omit-frame-pointer", "-fno-inline", "-pthread"]


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not LIBMEMPROF.is_file():
        pytest.fail("build/libmemprof.so is missing: run the tests with `make test`")
    return tmp_path_factory.mktemp("fixtures")


@pytest.fixture(scope="session")
def build_fixture(fixture_dir: Path):
    """Compile tests/fixtures/<name>.c[pp] once per session; returns the binary's path."""
    built: dict[tuple[str, tuple[str, ...]], Path] = {}

    def build(
        name: str,
        *extra: str,
        shared: bool = False,
        output: str | None = None,
        libs: tuple[str, ...] = (),
    ) -> Path:
        """`extra`: flags before the source; `libs`: what it links after it."""
        key = (name, extra + (("shared",) if shared else ()) + libs)
        if key in built:
            return built[key]
        source = next(FIXTURES.glob(f"{name}.c*"))
        compiler = "g++" if source.suffix == ".cpp" else "gcc"
        out = fixture_dir / (output or (f"lib{name}.so" if shared else name))
        flags = FIXTURE_CFLAGS + (["-shared", "-fPIC"] if shared else []) + list(extra)
        subprocess.run([compiler, *flags, "-o", str(out), str(source), *libs, "-ldl"], check=True)
        built[key] = out
        return out

    return build


@pytest.fixture(scope="session")
def log_steps_exe(build_fixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/log_steps.c, linked against the mstx and NVTX stand-ins."""
    libs = tmp_path_factory.mktemp("standins")
    build_standins(libs)
    return build_fixture(
        "log_steps",
        f"-I{INCLUDE}",
        f"-L{libs}",
        "-Wl,--no-as-needed",
        "-l:libmstx.so",
        "-l:libnvToolsExt.so.1",
        f"-Wl,-rpath,{libs}",
    )


@pytest.fixture(scope="session")
def go_build(tmp_path_factory):
    """Build tests/fixtures/go/<name>.go once per session, with cgo or without; returns
    the program's path."""
    folder = tmp_path_factory.mktemp("go")
    env = go_environment(folder)
    built: dict[tuple[str, bool], Path] = {}

    def build(name: str, cgo: bool) -> Path:
        if (name, cgo) not in built:
            out = folder / f"{name}{'_cgo' if cgo else ''}"
            subprocess.run(
                ["go", "build", "-o", str(out), str(FIXTURES / "go" / f"{name}.go")],
                env=dict(env, CGO_ENABLED="1" if cgo else "0"),
                check=True,
                timeout=300,
            )
            built[name, cgo] = out
        return built[name, cgo]

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


@pytest.fixture(scope="module")
def standin_dir(tmp_path_factory) -> Path:
    """Where a module's stand-in libraries and device fixtures are built."""
    return tmp_path_factory.mktemp("standins")
