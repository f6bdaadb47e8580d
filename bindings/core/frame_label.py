"""How every report, the gate and `top` name a frame: one function, as pprof's
NodeInfo.PrintableName is its reports' one (ARCHITECTURE.md, "Python programs")."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

Where = tuple[str, int] | None  # a source file and line, if known

_SHOWN_WITH_FOLDER = ("__init__.py", "__main__.py")


def frame_label(name: str, where: Where, lines: bool, shown_file: str | None = None) -> str:
    """A native function `name`, with lines `name path:line`; a Python function (its
    file as shown_files shows it) `name (file.py)`, with lines `name (file.py:42)`, the
    line it was running."""
    if shown_file is not None:
        line = f":{where[1]}" if lines and where is not None else ""
        return f"{name} ({shown_file}{line})"
    return f"{name} {where[0]}:{where[1]}" if lines and where is not None else name


def shown_files(paths: Iterable[str]) -> dict[str, str]:
    """Each Python file of `paths` as the reports show it: its name, as py-spy shows it
    (with its folder for a package's `__init__.py` or `__main__.py`), and as many of its
    folders more as tell it from the other files of that name among `paths` (PyTorch's
    `nn/functional.py` beside its `functional.py`)."""
    parts = {path: path.split("/") for path in set(paths)}
    depth = {path: 2 if p[-1] in _SHOWN_WITH_FOLDER else 1 for path, p in parts.items()}
    while True:
        shown = {path: "/".join(p[-depth[path] :]) for path, p in parts.items()}
        same: defaultdict[str, list[str]] = defaultdict(list)
        for path, label in shown.items():
            same[label].append(path)
        clashing = [
            path
            for paths_shown in same.values()
            if len(paths_shown) > 1
            for path in paths_shown
            if depth[path] < len(parts[path])
        ]
        if not clashing:
            return shown
        for path in clashing:
            depth[path] += 1
