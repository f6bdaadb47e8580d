"""The call graph as graphviz dot text in pprof's style, and as SVG through `dot`."""

from __future__ import annotations

import colorsys
import math
import shutil
import subprocess

from mem_profiler.parser.errors import UserError
from mem_profiler.parser.escape import dot_string
from mem_profiler.parser.graph import CallGraph, Edge
from mem_profiler.parser.units import (
    HEAP_HUES,
    format_amount,
    format_labelled,
    format_percent,
    format_value,
    unit_name,
)


def format_dot(graph: CallGraph, title: str, notes: list[str] = (), heap: str = "host") -> str:
    """dot text: a legend box (title, sample index, total, what was dropped, `notes`),
    then one box per node (name, flat, cum; font size by |flat|, colour by cum) and the
    edges (labelled with their weight, width and colour by weight, dotted if residual).
    The host heap has pprof's reds; a device heap draws its growth in its own hue."""
    unit = _unit(graph)
    hue = None if heap == "host" else HEAP_HUES.get(heap)
    if heap != "host":
        notes = [f"Heap: {heap}", *notes]
    out = [f'digraph "{dot_string(title)}" {{', 'node [style=filled fillcolor="#f8f8f8"]']
    legend = "\\l".join(dot_string(line) for line in _legend(graph, title, notes))
    out.append(f'subgraph cluster_L {{ "legend" [shape=box fontsize=16 label="{legend}\\l"'
               f' tooltip="{dot_string(title)}"] }}')
    max_flat = float(max(abs(graph.flat).max(initial=0.0), 0.0))
    for i, name in enumerate(graph.names):
        flat, cum = float(graph.flat[i]), float(graph.cum[i])
        label = "\\n".join([dot_string(name), _share(flat, graph.total, unit),
                            "of " + _share(cum, graph.total, unit)])
        size = 8 + (math.ceil(16 * math.sqrt(abs(flat) / max_flat)) if max_flat else 0)
        score = cum / abs(graph.total) if graph.total else 0.0
        out.append(f'N{i + 1} [label="{label}" id="node{i + 1}" fontsize={size} shape=box'
                   f' tooltip="{dot_string(name)} ({format_labelled(cum, unit)})"'
                   f' color="{_color(score, False, hue)}"'
                   f' fillcolor="{_color(score, True, hue)}"]')
    out += [_edge(graph, e, unit, hue) for e in graph.edges]
    out.append("}")
    return "\n".join(out) + "\n"


def render_svg(dot_text: str) -> bytes:
    """SVG drawn by graphviz's `dot`; UserError if it is missing or fails."""
    dot = shutil.which("dot")
    if dot is None:
        raise UserError("the call graph (-s) needs graphviz's `dot`: install the Debian package"
                        " graphviz (apt-get install graphviz).")
    done = subprocess.run([dot, "-Tsvg"], input=dot_text.encode("utf-8", "replace"),
                          capture_output=True)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"dot failed to draw the call graph: {reason[-1] if reason else '?'}")
    return done.stdout


def _unit(graph: CallGraph) -> str:
    return "objects" if graph.index.endswith("_objects") else "bytes"


def _share(value: float, total: float, unit: str) -> str:
    """`12.5 MB (80.1%)`"""
    return f"{format_labelled(value, unit)} ({format_percent(value, total)})"


def _legend(graph: CallGraph, title: str, notes: list[str]) -> list[str]:
    unit = _unit(graph)
    shown = float(graph.flat.sum())
    lines = [title, f"Type: {graph.index}", *notes,
             f"Total {unit_name(unit)}: {format_value(graph.total, unit)}",
             f"Showing nodes accounting for {format_labelled(shown, unit)},"
             f" {format_percent(shown, graph.total)} of total"]
    if graph.dropped_nodes:
        lines.append(f"Dropped {graph.dropped_nodes} node{'s' * (graph.dropped_nodes > 1)}"
                     f" (cum <= {format_amount(graph.node_cutoff, unit)})")
    if graph.dropped_edges:
        lines.append(f"Dropped {graph.dropped_edges} edge{'s' * (graph.dropped_edges > 1)}"
                     f" (freq <= {format_amount(graph.edge_cutoff, unit)})")
    if len(graph.names) < graph.nodes_before_top:
        lines.append(f"Showing top {len(graph.names)} nodes out of {graph.nodes_before_top}")
    return lines


def _edge(graph: CallGraph, edge: Edge, unit: str, hue: float | None) -> str:
    weight = format_labelled(edge.weight, unit)
    attrs = [f'label=" {weight}"']
    if graph.total:
        share = abs(edge.weight / graph.total)
        if (rank := 1 + int(min(share * 100, 100))) > 1:
            attrs.append(f"weight={rank}")
        if (width := 1 + int(min(share * 5, 5))) > 1:
            attrs.append(f"penwidth={width}")
        attrs.append(f'color="{_color(edge.weight / abs(graph.total), False, hue)}"')
    arrow = "..." if edge.residual else "->"
    tooltip = dot_string(f"{graph.names[edge.caller]} {arrow} {graph.names[edge.callee]}"
                      f" ({weight})")
    attrs.append(f'tooltip="{tooltip}" labeltooltip="{tooltip}"')
    if edge.residual:
        attrs.append('style="dotted"')
    return f"N{edge.caller + 1} -> N{edge.callee + 1} [{' '.join(attrs)}]"


def _color(score: float, background: bool, hue: float | None = None) -> str:
    """pprof's dotColor: red for positive scores (or `hue`), green for negative, grey
    near 0."""
    saturation, value = (0.1, 0.93) if background else (1.0, 0.7)
    score = max(-1.0, min(1.0, score))
    if abs(score) < 0.2:
        saturation *= abs(score) / 0.2
    score = math.copysign(abs(score) ** 0.3, score)  # shift scores away from grey
    if score >= 0 and hue is not None:
        r, g, b = colorsys.hsv_to_rgb(hue / 360, saturation * score, value)
        return "#" + "".join(f"{int(c * 255):02x}" for c in (r, g, b))
    if score < 0:
        r, g = value * (1 + saturation * score), value
    else:
        r, g = value, value * (1 - saturation * score)
    b = value * (1 - saturation)
    return "#" + "".join(f"{int(c * 255):02x}" for c in (r, g, b))
