"""How every report, the gate and `top` name a frame: one function, as pprof's
NodeInfo.PrintableName is its reports' one (ARCHITECTURE.md, "Python programs")."""

from __future__ import annotations

import os

Where = tuple[str, int] | None  # a source file and line, if known

_SHOWN_WITH_FOLDER = ("__init__.py", "__main__.py")


def frame_label(name: str, where: Where, lines: bool, python_file: str | None = None) -> str:
    """A native function `name`, with lines `name path:line`; a Python function (its
    file given) `name (file.py)`, with lines `name (file.py:42)`, the line it was
    running."""
    if python_file is not None:
        line = f":{where[1]}" if lines and where is not None else ""
        return f"{name} ({short_file(python_file)}{line})"
    return f"{name} {where[0]}:{where[1]}" if lines and where is not None else name


def short_file(path: str) -> str:
    """A Python file by its name, as py-spy shows it (with its folder for a package's
    `__init__.py` or `__main__.py`)."""
    base = os.path.basename(path)
    if base in _SHOWN_WITH_FOLDER:
        return os.path.join(os.path.basename(os.path.dirname(path)), base)
    return base
