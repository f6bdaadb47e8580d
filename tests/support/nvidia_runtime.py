"""NVIDIA's own CUDA runtimes (libcudart) from PyPI, for the tests that run them over
the stand-in driver: the wheels `nvidia-cuda-runtime-cu11` (11.x),
`nvidia-cuda-runtime-cu12` (12.x) and `nvidia-cuda-runtime` (13.x) hold the
library.  Each is fetched once with pip (`pip download`, no dependencies) and
only its libcudart.so.N is kept, in build/nvidia-cuda-runtime/<version>/, so a
later `make test` finds it there.

    from support.nvidia_runtime import RUNTIMES, runtime_library
    lib = runtime_library("12.4")      # Path to that libcudart.so.12
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from support.paths import ROOT

CACHE = ROOT / "build" / "nvidia-cuda-runtime"

# version: (PyPI package, pinned release)
RUNTIMES = {
    "11.8": ("nvidia-cuda-runtime-cu11", "11.8.89"),
    "12.1": ("nvidia-cuda-runtime-cu12", "12.1.105"),
    "12.4": ("nvidia-cuda-runtime-cu12", "12.4.127"),
    "12.9": ("nvidia-cuda-runtime-cu12", "12.9.79"),
    "13.0": ("nvidia-cuda-runtime", "13.0.96"),
}


def _library_in(folder: Path) -> Path | None:
    found = sorted(folder.glob("libcudart.so.*"))
    return found[0] if found else None


def runtime_library(version: str) -> Path:
    """The path of NVIDIA's libcudart of this version, fetched on first use."""
    package, release = RUNTIMES[version]
    folder = CACHE / release
    lib = _library_in(folder)
    if lib is not None:
        return lib
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lib = _library_in(folder)
        if lib is not None:
            return lib
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--dest",
                    tmp,
                    f"{package}=={release}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or len(wheels) != 1:
                raise RuntimeError(f"pip download {package}=={release} failed:\n{proc.stderr}")
            staging = Path(tmp) / "lib"
            staging.mkdir()
            with zipfile.ZipFile(wheels[0]) as wheel:
                for member in wheel.namelist():
                    name = os.path.basename(member)
                    if "/lib/" in member and name.startswith("libcudart.so."):
                        with wheel.open(member) as src, open(staging / name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
            if _library_in(staging) is None:
                raise RuntimeError(f"{wheels[0].name} holds no libcudart.so")
            os.replace(staging, folder)
    library = _library_in(folder)
    assert library is not None, folder
    return library
