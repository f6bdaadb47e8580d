"""The call graph in pprof's style: dot built with the `graphviz` package, drawn as SVG by
graphviz's `dot` program (the Debian package graphviz)."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mem_profiler.core.errors import UserError
from mem_profiler.core.escape import visible
from mem_profiler.core.heaps import HEAP_HUES
from mem_profiler.core.units import (
    REPORT_UNITS,
    format_amount,
    format_labelled,
    format_share,
    format_value,
    unit_name,
)
from mem_profiler.parser.common.sampling import index_unit
from mem_profiler.parser.model.call_graph import CallGraph, Edge, call_graph
from mem_profiler.parser.report.text import changed_in_both_ways

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering

GRAPH_NODECOUNT = 80  # nodes in a call graph unless --nodecount says otherwise


def format_dot(graph: CallGraph, title: str, notes: Sequence[str] = (), heap: str = "host") -> str:
    """dot text: a legend box (title, sample index, total, what was dropped, `notes`),
    then one box per node (name, flat, cum; font size by |flat|, colour by cum) and the
    edges (labelled with their weight, width and colour by weight, dotted if residual).
    The host heap has pprof's reds; a device heap draws its growth in its own hue."""
    # Imported here, not at the top: only a call graph needs it (20 ms of a command line).
    from graphviz import Digraph, nohtml

    unit = index_unit(graph.index)
    hue = None if heap == "host" else HEAP_HUES.get(heap)
    if heap != "host":
        notes = [f"Heap: {heap}", *notes]
    dot = Digraph(_text(title), node_attr={"style": "filled", "fillcolor": "#f8f8f8"})
    legend = "".join(f"{_text(line)}\\l" for line in _legend(graph, title, notes))
    with dot.subgraph(name="cluster_L") as box:
        box.node("legend", nohtml(legend), shape="box", fontsize="16", tooltip=_text(title))
    max_flat = float(max(abs(graph.flat).max(initial=0.0), 0.0))
    for i, name in enumerate(graph.names):
        flat, cum = float(graph.flat[i]), float(graph.cum[i])
        label = "\\n".join(
            [
                _text(name),
                _with_share(flat, graph.share_of, unit),
                "of " + _with_share(cum, graph.share_of, unit),
            ]
        )
        size = 8 + (math.ceil(16 * math.sqrt(abs(flat) / max_flat)) if max_flat else 0)
        score = cum / graph.share_of if graph.share_of else 0.0
        dot.node(
            f"N{i + 1}",
            nohtml(label),
            id=f"node{i + 1}",
            fontsize=str(size),
            shape="box",
            tooltip=_text(f"{name} ({format_labelled(cum, unit)})"),
            color=_color(score, False, hue),
            fillcolor=_color(score, True, hue),
        )
    for edge in graph.edges:
        dot.edge(
            f"N{edge.caller + 1}", f"N{edge.callee + 1}", **_edge_attrs(graph, edge, unit, hue)
        )
    return dot.source


def render_svg(dot_text: str) -> bytes:
    """SVG drawn by graphviz's `dot`; UserError if it is missing or fails."""
    import graphviz  # see format_dot

    try:
        svg = graphviz.pipe("dot", "svg", dot_text.encode("utf-8", "replace"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise UserError(
            "the call graph (-s) needs graphviz's `dot`: install the Debian package"
            " graphviz (apt-get install graphviz)."
        ) from None
    except graphviz.CalledProcessError as e:
        reason = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        raise UserError(
            f"dot failed to draw the call graph: {reason[-1] if reason else '?'}"
        ) from None
    return _for_a_window(svg)


# A browser shows the drawing whole, shrunk to its window where it is larger (never
# grown), and zooms it with the wheel around the pointer, pans it with a drag and puts it
# back with a double click, as pprof's SVG does; dot's own size stays for other readers.
_WINDOW_STYLE = b' style="max-width:100vw;max-height:100vh"'
_ZOOM_SCRIPT = b"""<script type="text/javascript"><![CDATA[
(function () {
  var svg = document.documentElement, box = svg.viewBox.baseVal, drag = null;
  var home = [box.x, box.y, box.width, box.height];
  function at(e) {
    var p = svg.createSVGPoint();
    p.x = e.clientX; p.y = e.clientY;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }
  svg.addEventListener("wheel", function (e) {
    var p = at(e), k = e.deltaY < 0 ? 0.8 : 1.25;
    box.x = p.x - (p.x - box.x) * k; box.y = p.y - (p.y - box.y) * k;
    box.width *= k; box.height *= k;
    e.preventDefault();
  }, {passive: false});
  svg.addEventListener("mousedown", function (e) { drag = at(e); });
  svg.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var p = at(e);
    box.x -= p.x - drag.x; box.y -= p.y - drag.y;
  });
  svg.addEventListener("mouseup", function () { drag = null; });
  svg.addEventListener("dblclick", function () {
    box.x = home[0]; box.y = home[1]; box.width = home[2]; box.height = home[3];
  });
})();
]]></script>
"""


def _for_a_window(svg: bytes) -> bytes:
    """dot's SVG (`<svg width=.. height=.. viewBox=..>`) with _WINDOW_STYLE and
    _ZOOM_SCRIPT."""
    start = svg.find(b"<svg ")
    end = svg.rfind(b"</svg>")
    if start < 0 or end < 0:
        return svg
    at = start + len(b"<svg")
    return svg[:at] + _WINDOW_STYLE + svg[at:end] + _ZOOM_SCRIPT + svg[end:]


def _text(text: str) -> str:
    """Text from the profile as dot shows it: invisible characters written visibly (see
    escape.visible), `\\` and `<...>` meaning themselves."""
    from graphviz import escape

    return escape(visible(text))


def _with_share(value: float, total: float, unit: str) -> str:
    """`12.5 MB (80.1%)`"""
    return f"{format_labelled(value, unit)} ({format_share(value, total)})"


def _legend(graph: CallGraph, title: str, notes: Sequence[str]) -> list[str]:
    unit = index_unit(graph.index)
    shown = float(graph.flat.sum())
    lines = [
        title,
        f"Type: {graph.index}" + ("" if unit == "objects" else f" ({REPORT_UNITS})"),
        *notes,
        f"Total {unit_name(unit)}: {format_value(graph.total, unit)}",
        f"Showing nodes accounting for {format_labelled(shown, unit)},"
        f" {format_share(shown, graph.share_of)} of"
        f" {changed_in_both_ways(graph.total, graph.share_of, unit) or 'total'}",
    ]
    if graph.dropped_nodes:
        lines.append(
            f"Dropped {graph.dropped_nodes} node{'s' * (graph.dropped_nodes > 1)}"
            f" (cum <= {format_amount(graph.node_cutoff, unit)})"
        )
    if graph.dropped_edges:
        lines.append(
            f"Dropped {graph.dropped_edges} edge{'s' * (graph.dropped_edges > 1)}"
            f" (freq <= {format_amount(graph.edge_cutoff, unit)})"
        )
    if len(graph.names) < graph.nodes_before_top:
        lines.append(f"Showing top {len(graph.names)} nodes out of {graph.nodes_before_top}")
    return lines


def _edge_attrs(graph: CallGraph, edge: Edge, unit: str, hue: float | None) -> dict[str, str]:
    weight = format_labelled(edge.weight, unit)
    attrs = {"label": f" {weight}"}
    if graph.share_of:
        share = abs(edge.weight / graph.share_of)
        if (rank := 1 + int(min(share * 100, 100))) > 1:
            attrs["weight"] = str(rank)
        if (width := 1 + int(min(share * 5, 5))) > 1:
            attrs["penwidth"] = str(width)
        attrs["color"] = _color(edge.weight / graph.share_of, False, hue)
    arrow = "..." if edge.residual else "->"
    attrs["tooltip"] = attrs["labeltooltip"] = _text(
        f"{graph.names[edge.caller]} {arrow} {graph.names[edge.callee]} ({weight})"
    )
    if edge.residual:
        attrs["style"] = "dotted"
    return attrs


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


def render(r: Rendering) -> bytes:
    """-s: the call graph, drawn."""
    req = r.request
    graph = call_graph(
        r.named,
        req.index,
        lines=req.lines,
        full_names=req.full_names,
        nodefraction=req.nodefraction,
        edgefraction=req.edgefraction,
        nodecount=GRAPH_NODECOUNT if req.nodecount is None else req.nodecount,
    )
    return render_svg(format_dot(graph, req.title, r.notes, heap=r.named.profile.heap))
