"""Builds the stand-in device libraries (ARCHITECTURE.md, "Device and HAL allocators")
and the device fixture programs into one folder, with gcc.  Idempotent: a target is
rebuilt only when its sources, flags or the libraries it links have changed (a stamp per target).

    from standins.build import build_standins, build_device_fixture, standin_env
    libs = build_standins(out)                     # {"libcuda.so.1": Path, ...}
    exe = build_device_fixture("device_cuda", out)  # builds the stand-ins too
    subprocess.run([exe, "local"], env=standin_env(out), ...)

or from a shell:  python tests/standins/build.py OUT_DIR [FIXTURE ...]

Everything lands flat in out_dir.  Each library and fixture that needs another
carries RUNPATH $ORIGIN, so the programs run without LD_LIBRARY_PATH;
standin_env() also puts out_dir on LD_LIBRARY_PATH, the way the real driver is
found through the loader's path rather than through its caller's RUNPATH.
device_noruntime has no RUNPATH: run it WITHOUT standin_env() to get the
"runtime missing" case.

The libraries are built the way the real ones are: -O2 without frame pointers
(DWARF CFI only), -g for symbols; frame_pointers=True builds them with frame
pointers instead (into the same folder: the stamp notices the change).  The
fixtures are built like tests/conftest.py builds its fixtures: -O1 -g, frame
pointers, no inlining, no sibling calls.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
FIXTURES = HERE.parent / "fixtures"
CC = os.environ.get("CC", "gcc")

LIB_CFLAGS = [
    "-std=gnu11",
    "-g",
    "-O2",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
    "-pthread",
    f"-I{INCLUDE}",
    f"-I{HERE}",
]
FIXTURE_CFLAGS = [
    "-std=gnu11",
    "-g",
    "-O1",
    "-fno-omit-frame-pointer",
    "-fno-inline",
    "-fno-optimize-sibling-calls",
    "-Wall",
    "-Wextra",
    "-pthread",
    f"-I{INCLUDE}",
]
ORIGIN = ["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"]


@dataclass(frozen=True)
class Target:
    output: str
    sources: tuple[str, ...]  # relative to tests/
    flags: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # outputs of other targets, linked by name
    libs: tuple[str, ...] = ()  # system libraries (-ldl ...)
    cxx: bool = False  # C built as C++ by the C compiler's g++, where there is one


_HEADERS = (
    "standins/include/standin_cuda.h",
    "standins/include/standin_acl.h",
    "standins/include/standin_markers.h",
    "standins/include/standin_framework.h",
    "standins/standin_util.h",
    "fixtures/device_fixture.h",
)

LIBRARIES: dict[str, Target] = {
    t.output: t
    for t in (
        Target(
            "libcuda.so.1",
            ("standins/libcuda.c", "standins/cuda_kernels.c"),
            ("-Wl,-soname,libcuda.so.1", "-Wl,-Bsymbolic"),
        ),
        Target(
            "libcudart.so.12",
            ("standins/libcudart.c",),
            ("-Wl,-soname,libcudart.so.12", *ORIGIN),
            libs=("-ldl",),
        ),
        Target(
            "libframework.so",
            ("standins/framework.c",),
            ("-Wl,-soname,libframework.so", *ORIGIN),
            links=("libcudart.so.12",),
        ),
        Target(  # the sampler arms USDT probes on x86-64 only
            "libc10_cuda.so",
            ("standins/c10_cuda.c",),
            ("-Wl,-soname,libc10_cuda.so", *ORIGIN),
            links=("libcudart.so.12",),
            cxx=True,
        ),
        Target(
            "libc10_cuda.so.2.0",
            ("standins/c10_cuda.c",),
            ("-DSTANDIN_NO_PROBES", "-Wl,-soname,libc10_cuda.so.2.0", *ORIGIN),
            links=("libcudart.so.12",),
            cxx=True,
        ),
        Target(
            "libascend_hal.so", ("standins/libascend_hal.c",), ("-Wl,-soname,libascend_hal.so",)
        ),
        Target(
            "libascendcl.so",
            ("standins/libascendcl.c",),
            ("-Wl,-soname,libascendcl.so", *ORIGIN),
            links=("libascend_hal.so",),
        ),
        Target("libmstx.so", ("standins/markers.c",), ("-DSTANDIN_MSTX", "-Wl,-soname,libmstx.so")),
        Target(
            "libnvToolsExt.so.1",
            ("standins/markers.c",),
            ("-DSTANDIN_NVTX", "-Wl,-soname,libnvToolsExt.so.1"),
        ),
        # Not a stand-in: a test-only LD_PRELOAD that shows the loading traps.
        Target(
            "libstandin_probe.so",
            ("standins/probe.c",),
            ("-Wl,-soname,libstandin_probe.so",),
            libs=("-ldl",),
        ),
    )
}

FIXTURE_TARGETS: dict[str, Target] = {
    t.output: t
    for t in (
        Target("device_cuda", ("fixtures/device_cuda.c",), tuple(ORIGIN), libs=("-ldl",)),
        Target(
            "device_cuda_direct",
            ("fixtures/device_cuda.c", "standins/framework.c"),
            ("-DDEVICE_DIRECT", *ORIGIN),
            links=("libcudart.so.12",),
            libs=("-ldl",),
        ),
        Target("device_acl", ("fixtures/device_acl.c",), tuple(ORIGIN), libs=("-ldl",)),
        Target(
            "device_acl_linked",
            ("fixtures/device_acl.c",),
            ("-DDEVICE_LINKED", *ORIGIN),
            links=("libascendcl.so", "libascend_hal.so"),
        ),
        Target("device_cuda_api", ("fixtures/device_cuda_api.c",), tuple(ORIGIN), libs=("-ldl",)),
        Target("device_foreign", ("fixtures/device_foreign.c",), tuple(ORIGIN), libs=("-ldl",)),
        Target("device_uses", ("fixtures/device_uses.c",), tuple(ORIGIN), libs=("-ldl",)),
        Target(
            "device_churn", ("fixtures/device_churn.c",), tuple(ORIGIN), links=("libcudart.so.12",)
        ),
        Target("device_pool", ("fixtures/device_pool.c",), tuple(ORIGIN), libs=("-ldl",)),
        Target("device_noruntime", ("fixtures/device_noruntime.c",), libs=("-ldl",)),
        Target(
            "device_markers",
            ("fixtures/device_markers.c",),
            tuple(ORIGIN),
            links=("libmstx.so", "libnvToolsExt.so.1"),
        ),
    )
}


def _stamp(target: Target, base_flags: list[str], out_dir: Path, cc: str) -> str:
    h = hashlib.sha256()
    h.update(cc.encode())
    for part in (*base_flags, *target.flags, *target.libs):
        h.update(part.encode() + b"\0")
    for rel in (*target.sources, *_HEADERS):
        h.update((HERE.parent / rel).read_bytes())
    for dep in target.links:  # relink when a library it links changed
        h.update((out_dir / ".stamps" / dep).read_bytes())
    return h.hexdigest()


def _for_cxx(target: Target, base_flags: list[str], cc: str) -> tuple[list[str], str]:
    """The flags and compiler of a target: one built as C++ (`cxx`) by the C compiler's
    g++ where it is installed, else as C."""
    cxx = cc.removesuffix("gcc") + "g++" if cc.endswith("gcc") else "g++"
    if not target.cxx or shutil.which(cxx) is None:
        return base_flags, cc
    flags = ["-std=gnu++17" if flag == "-std=gnu11" else flag for flag in base_flags]
    return [*flags, "-x", "c++"], cxx


def _build(target: Target, base_flags: list[str], out_dir: Path, cc: str = CC) -> Path:
    base_flags, cc = _for_cxx(target, base_flags, cc)
    out = out_dir / target.output
    stamp_file = out_dir / ".stamps" / target.output
    stamp = _stamp(target, base_flags, out_dir, cc)
    if out.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return out
    tmp = out.with_name(f".{target.output}.tmp{os.getpid()}")
    links = [f"-l:{name}" for name in target.links]
    cmd = [
        cc,
        *base_flags,
        *target.flags,
        "-o",
        str(tmp),
        *(str(HERE.parent / s) for s in target.sources),
        f"-L{out_dir}",
        *links,
        *target.libs,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {target.output} failed:\n{' '.join(cmd)}\n{proc.stderr}")
    os.replace(tmp, out)
    stamp_file.write_text(stamp)
    return out


class _Lock:
    """One builder per out_dir at a time (parallel test processes)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ".stamps" / "lock"

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _lib_flags(frame_pointers: bool) -> list[str]:
    return LIB_CFLAGS + (
        ["-fno-omit-frame-pointer"] if frame_pointers else ["-fomit-frame-pointer"]
    )


# sys/sdt.h (systemtap-sdt-dev) is the same for every machine; the host's serves another
# machine's compiler too, from a folder of its own (the host's include folder would not).
SDT_HEADERS = [Path(f"/usr/include/x86_64-linux-gnu/sys/{h}") for h in ("sdt.h", "sdt-config.h")]


def _sdt_flags(out_dir: Path, cc: str) -> list[str]:
    if cc == CC:
        return []
    folder = out_dir / "sdt-include" / "sys"
    folder.mkdir(parents=True, exist_ok=True)
    for header in SDT_HEADERS:
        shutil.copyfile(header, folder / header.name)
    return ["-idirafter", str(folder.parent)]


def build_standins(out_dir: Path, frame_pointers: bool = False, cc: str = CC) -> dict[str, Path]:
    """Builds every stand-in library into out_dir with the compiler `cc` (another
    architecture's: its own out_dir); returns {file name: path}."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with _Lock(out_dir):
        flags = _lib_flags(frame_pointers) + _sdt_flags(out_dir, cc)
        return {name: _build(t, flags, out_dir, cc) for name, t in LIBRARIES.items()}


def build_device_fixture(
    name: str, out_dir: Path, frame_pointers: bool = False, cc: str = CC
) -> Path:
    """Builds the stand-ins and the fixture `name` (a key of FIXTURE_TARGETS:
    device_cuda, device_cuda_direct, device_cuda_api, device_foreign, device_uses, device_acl,
    device_acl_linked, device_churn, device_noruntime, device_markers, device_pool) into
    out_dir with the compiler `cc`; returns the program's path."""
    if name not in FIXTURE_TARGETS:
        raise KeyError(f"no device fixture {name!r}: one of {', '.join(FIXTURE_TARGETS)}")
    out_dir = Path(out_dir).resolve()
    build_standins(out_dir, frame_pointers, cc)
    with _Lock(out_dir):
        return _build(FIXTURE_TARGETS[name], FIXTURE_CFLAGS, out_dir, cc)


def build_fixture_for_real_driver(name: str, out_dir: Path) -> Path:
    """The fixture `name` built as above, then copied alone into out_dir/real: beside
    the stand-ins its RUNPATH ($ORIGIN) finds their libcuda.so.1 before NVIDIA's where
    the system's driver is not on LD_LIBRARY_PATH.  For fixtures linked to no stand-in."""
    if FIXTURE_TARGETS[name].links:
        raise ValueError(f"{name} is linked to stand-ins: it cannot run without them")
    exe = build_device_fixture(name, out_dir)
    alone = Path(out_dir).resolve() / "real"
    alone.mkdir(exist_ok=True)
    return Path(shutil.copy2(exe, alone / exe.name))


def standin_env(out_dir: Path, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment for running the fixtures: out_dir first on LD_LIBRARY_PATH,
    plus the given variables (STANDIN_DEVICE_MEMORY=..., STANDIN_TRACE=...)."""
    env = dict(os.environ if base is None else base)
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(Path(out_dir).resolve()) + (f":{old}" if old else "")
    env.update(extra)
    return env


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(
            "usage: build.py OUT_DIR [FIXTURE ...]  (fixtures: " + ", ".join(FIXTURE_TARGETS) + ")"
        )
    target_dir = Path(sys.argv[1])
    for path in build_standins(target_dir).values():
        print(path)
    for fixture in sys.argv[2:]:
        print(build_device_fixture(fixture, target_dir))
