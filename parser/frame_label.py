"""How every report, the gate and `top` name a frame: one function, as pprof's
NodeInfo.PrintableName is its reports' one. It imports nothing heavy, so that the light
command lines may share it."""

from __future__ import annotations

Where = tuple[str, int] | None  # a source file and line, if known


def frame_label(name: str, where: Where, lines: bool) -> str:
    """A function `name`, with lines `name path:line` where its line is known."""
    return f"{name} {where[0]}:{where[1]}" if lines and where is not None else name
