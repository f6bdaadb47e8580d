"""The CPythons the Python tests run their fixtures under: pyenv's newest patch release
of each of 3.9 to 3.13 (in $PYENV_ROOT, ~/.pyenv by default) and Debian's python3.11 as
Debian ships it, each a pytest param skipped with its reason where it is absent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
PYENV_VERSIONS = PYENV_ROOT / "versions"
PYENV_SHIM = PYENV_ROOT / "shims/python3"  # a bash script that execs the one chosen
DEBIAN_PYTHON = Path("/usr/bin/python3.11")
VENV_PYTHON = Path(sys.executable)  # the tests' own, the one with numpy
MINORS = range(9, 14)


def _version(python: Path) -> list[int]:
    """3.11.7 of .../versions/3.11.7/bin/python3.11, as numbers (3.9.18 before 3.9.2
    would be text's order)."""
    return [int(part) for part in python.parts[-3].split(".") if part.isdigit()]


def pyenv_python(minor: int) -> Path | None:
    """pyenv's newest CPython 3.<minor>, if installed."""
    found = sorted(set(PYENV_VERSIONS.glob(f"3.{minor}.*/bin/python3.{minor}")), key=_version)
    return found[-1] if found else None


def interpreter(name: str, path: Path | None):
    """A param of `path`, with the id `name`, skipped where it is not installed."""
    return pytest.param(
        path,
        id=name,
        marks=pytest.mark.skipif(
            path is None or not path.exists(), reason=f"no CPython {name} on this machine"
        ),
    )


def debian() -> object:
    """Debian's /usr/bin/python3.11 (not PIE; its own malloc import), id debian-3.11."""
    return interpreter("debian-3.11", DEBIAN_PYTHON)


def interpreters(prefix: str = "pyenv-") -> list:
    """pyenv's 3.9 to 3.13, with ids `prefix`3.<minor>, then debian()."""
    return [*(interpreter(f"{prefix}3.{minor}", pyenv_python(minor)) for minor in MINORS), debian()]
