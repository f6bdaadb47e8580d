"""The timeline of a capture as a self-contained SVG: each heap's estimated live bytes over
time (replayed from the events) and the peak of each timeline interval, the process's RSS,
the program's marks and ranges, and each heap's peak."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, overload

import numpy as np

from mem_profiler.core.escape import xml_text
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.heaps import TIMELINE_COLORS as COLORS
from mem_profiler.core.units import axis_unit, format_amount
from mem_profiler.parser.log.analysis import (
    MS,
    Peak,
    WindowLog,
    interval_starts,
    peak,
    replay,
    replay_groups,
)
from mem_profiler.parser.read.event_log import EventLog

WIDTH, HEIGHT = 960, 500
LEFT, RIGHT, TOP, BOTTOM = 84, 24, 96, 56  # margins around the plot
RSS_COLOR, MARK_COLOR = "#7f7f7f", "#555555"
# the areas' colours (categories, functions), in the order of their names
AREA_COLORS = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5")
LEGEND_NAME = 48  # characters of an area's name in the legend
LEGEND_ROW = 18  # the height of a row of the areas' legend, under the plot
MAX_MARK_LABELS = 40  # beyond this, marks are drawn but only some are labelled


@dataclass
class Areas:
    """Live bytes drawn as areas stacked under the capture's heap's line: their names,
    each allocation's index among them (cap.allocs; -1: in none), and what the notes
    above the plot say they are, with their peak (None: nothing)."""

    names: list[str]
    group: np.ndarray
    note: str | None = None


class XScale(Protocol):
    """A time (ns) to the plot's horizontal coordinate, or an array of times to theirs."""

    @overload
    def __call__(self, t_ns: float, /) -> float: ...
    @overload
    def __call__(self, t_ns: np.ndarray, /) -> np.ndarray: ...


YScale = Callable[[float], float]  # a number of bytes to the plot's vertical coordinate


def format_timeline(
    cap: WindowLog,
    program: str | None = None,
    areas: Areas | None = None,
) -> str:
    """The SVG document of a capture's log; `program` names it in the title (by default
    the program the .heap file names)."""
    log = cap.log
    if program is None:
        program = os.path.basename(cap.profile.exe or "") if cap.profile else ""
    title = f"{program or 'the program'} (pid {log.pid}): memory over time"
    tl = log.timeline
    heaps = sorted(set(tl["heap"].tolist()) | set(log.events["heap"].tolist()))
    curves = {h: replay(cap, h) for h in heaps}
    peaks = [peak(cap, h) for h in heaps]
    t_end = max(log.end_ns, 1)
    top_bytes = max([1, *tl["peak"].tolist(), *tl["rss"].tolist(), *(p.bytes for p in peaks)])
    notes = _notes(log)
    if areas is not None:
        times, values = replay_groups(cap, areas.group, len(areas.names))
        if areas.note is not None:
            notes.append(_areas_note(areas.note, times, values.sum(axis=0)))
    scale, unit = axis_unit(top_bytes)
    y_top, y_ticks = _ticks(top_bytes / scale)
    t_scale, t_unit = (MS, "ms") if t_end < 10_000 * MS else (1e9, "s")
    x_top, x_ticks = _ticks(t_end / t_scale)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    @overload
    def x(t_ns: float) -> float: ...
    @overload
    def x(t_ns: np.ndarray) -> np.ndarray: ...
    def x(t_ns: float | np.ndarray) -> float | np.ndarray:  # XScale
        return LEFT + plot_w * np.minimum(t_ns / t_scale / x_top, 1.0)

    def y(nbytes: float) -> float:
        return TOP + plot_h * (1.0 - max(nbytes, 0) / scale / y_top)

    legend, rows = _areas_legend(areas.names) if areas is not None else ([], 0)
    height = HEIGHT + 8 + LEGEND_ROW * rows if rows else HEIGHT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{xml_text(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{xml_text(title)}</text>',
    ]
    out += [
        f'<text x="{LEFT}" y="{44 + 16 * i}" fill="#333">{xml_text(note)}</text>'
        for i, note in enumerate(notes)
    ]
    out += _axes(x, y, x_ticks, y_ticks, t_scale, scale, t_unit, unit, plot_w, plot_h)
    if areas is not None:
        out += _stacked(times, values, areas.names, t_end, x, y)
    out += _marks(log, x, plot_h)
    for h in heaps:
        color = COLORS[HEAPS[h]]
        out += _intervals(tl[tl["heap"] == h], log, color, x, y)
        out.append(_curve(*curves[h], t_end, color, x, y))
    rss = tl[tl["heap"] == tl["heap"].min()] if len(tl) else tl  # each heap's has the RSS
    if len(rss):
        points = " ".join(
            f"{x(t):.1f},{y(r):.1f}"
            for t, r in zip(rss["time_ns"].tolist(), rss["rss"].tolist(), strict=True)
        )
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{RSS_COLOR}"'
            ' stroke-width="1.5" stroke-dasharray="5,3"><title>RSS</title></polyline>'
        )
    for p in peaks:
        out += _peak(p, x, y)
    out += _legend([HEAPS[h] for h in heaps], bool(len(rss)), bool(log.marks))
    out += legend
    if not heaps:
        out.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle"'
            ' fill="#999">nothing recorded yet</text>'
        )
    out.append("</svg>\n")
    return "\n".join(out)


def _notes(log: EventLog) -> list[str]:
    rates = f"sampling rate {log.rate} B" + (
        f" (device heaps {log.device_rate} B)" if log.device_rate != log.rate else ""
    )
    notes = [f"{rates}; a timeline record every {log.interval_ms} ms; {len(log.marks)} marks"]
    if log.first_file > 1:
        notes.append(
            f"log files 1-{log.first_file - 1} were deleted by rotation: the curves"
            " are anchored to the first timeline record left"
        )
    return notes


def _areas_note(note: str, times: np.ndarray, live: np.ndarray) -> str:
    """What the areas hold, and their peak together."""
    at = int(np.argmax(live))
    if live[at] <= 0:
        return f"areas: {note}, live: none at any time"
    return (
        f"areas: {note}, live; their peak"
        f" {format_amount(float(live[at]), 'bytes')} at {times[at] / MS:.1f} ms"
    )


def _ticks(top: float, count: int = 6) -> tuple[float, list[float]]:
    """A round axis end >= top and the ticks up to it, in steps of 1, 2 or 5 x 10^k."""
    raw = max(top, 1e-9) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    n = max(math.ceil(top / step - 1e-9), 1)
    return n * step, [i * step for i in range(n + 1)]


def _label(value: float) -> str:
    return f"{value:.10g}"


def _axes(
    x: XScale,
    y: YScale,
    x_ticks: list[float],
    y_ticks: list[float],
    t_scale: float,
    scale: float,
    t_unit: str,
    unit: str,
    plot_w: float,
    plot_h: float,
) -> list[str]:
    out = []
    for v in y_ticks:
        py = y(v * scale)
        out.append(
            f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + plot_w}" y2="{py:.1f}" stroke="#e5e5e5"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    for v in x_ticks:
        px = x(v * t_scale)
        out.append(
            f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + plot_h}" stroke="#f0f0f0"/>'
        )
        out.append(
            f'<text x="{px:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_label(v)}</text>'
        )
    bottom = TOP + plot_h
    out.append(f'<path d="M{LEFT},{TOP} V{bottom} H{LEFT + plot_w}" fill="none" stroke="black"/>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{bottom + 40}" text-anchor="middle">'
        f"time since the window's start ({t_unit})</text>"
    )
    out.append(
        f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle"'
        f' transform="rotate(-90 18 {TOP + plot_h / 2})">memory ({_unit_bytes(unit, scale)};'
        " heaps: estimated live bytes)</text>"
    )
    return out


def _unit_bytes(unit: str, scale: float) -> str:
    """`MB = 2^20 bytes` (jeprof's and pprof's names: units.REPORT_UNITS), `bytes`."""
    return "bytes" if scale == 1 else f"{unit} = 2^{int(scale).bit_length() - 1} bytes"


def _intervals(records: np.ndarray, log: EventLog, color: str, x: XScale, y: YScale) -> list[str]:
    """A heap's timeline records: each interval's peak as a shaded step."""
    if not len(records):
        return []
    times, peaks = records["time_ns"].tolist(), records["peak"].tolist()
    starts = interval_starts(log, records)
    steps = " ".join(
        f"{x(t0):.1f},{y(p):.1f} {x(t1):.1f},{y(p):.1f}"
        for t0, t1, p in zip(starts, times, peaks, strict=True)
    )
    base = y(0)
    band = f"{x(starts[0]):.1f},{base:.1f} {steps} {x(times[-1]):.1f},{base:.1f}"
    return [
        f'<polygon points="{band}" fill="{color}" fill-opacity="0.18" stroke="{color}"'
        ' stroke-opacity="0.5" stroke-width="0.8"><title>peak of each interval</title>'
        "</polygon>"
    ]


def _curve(
    times: np.ndarray, values: np.ndarray, t_end: int, color: str, x: XScale, y: YScale
) -> str:
    """A heap's replayed live bytes (see replay) as a step line, four points per pixel
    column with events: the value before them, their minimum, maximum and last value."""
    columns = np.floor(x(times)).astype(np.int64)
    first = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    last = np.r_[first[1:], len(values)] - 1
    before = values[np.maximum(first - 1, 0)]
    corners = np.column_stack(
        [
            before,
            np.minimum.reduceat(values, first),
            np.maximum.reduceat(values, first),
            values[last],
        ]
    )
    points = [
        f"{c},{y(v):.1f}"
        for c, row in zip(columns[first].tolist(), corners.tolist(), strict=True)
        for v in row
    ]
    points.append(f"{x(t_end):.1f},{y(float(values[-1])):.1f}")
    joined = " ".join(points)
    return (
        f'<polyline points="{joined}" fill="none" stroke="{color}"'
        ' stroke-width="2"><title>estimated live bytes</title></polyline>'
    )


def _marks(log: EventLog, x: XScale, plot_h: float) -> list[str]:
    """Ranges as bands, other marks as dashed lines, each labelled along its left edge."""
    out = []
    ends = {m.id: m for m in log.marks if m.kind == "range_end"}
    shown = [m for m in log.marks if m.kind != "range_end"]
    every = math.ceil(len(shown) / MAX_MARK_LABELS) if shown else 1
    for i, m in enumerate(shown):
        px = x(m.time_ns)
        tip = f"{m.label} at {m.time_ns / MS:.1f} ms"
        end = ends.get(m.id) if m.kind == "range_start" else None
        if end is not None:
            width = max(x(end.time_ns) - px, 1.0)
            tip += f" to {end.time_ns / MS:.1f} ms"
            out.append(
                f'<rect x="{px:.1f}" y="{TOP}" width="{width:.1f}" height="{plot_h}"'
                f' fill="{MARK_COLOR}" fill-opacity="0.10"><title>{xml_text(tip)}</title>'
                "</rect>"
            )
        else:
            out.append(
                f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + plot_h}"'
                f' stroke="{MARK_COLOR}" stroke-dasharray="3,3"><title>{xml_text(tip)}'
                "</title></line>"
            )
        if i % every == 0:
            out.append(
                f'<text x="{px + 3:.1f}" y="{TOP + 4}" font-size="10" fill="{MARK_COLOR}"'
                f' transform="rotate(90 {px + 3:.1f} {TOP + 4})">{xml_text(m.label)}</text>'
            )
    return out


def _peak(p: Peak, x: XScale, y: YScale) -> list[str]:
    px, py = x(p.time_ns), y(p.bytes)
    text = f"peak {format_amount(p.bytes, 'bytes')} ({p.heap}) at {p.time_ns / MS:.1f} ms"
    anchor, dx = ("end", -8) if px > LEFT + (WIDTH - LEFT - RIGHT) * 0.6 else ("start", 8)
    return [
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{COLORS[p.heap]}" stroke="black">'
        f"<title>{xml_text(text)}</title></circle>",
        f'<text x="{px + dx:.1f}" y="{py - 6:.1f}" text-anchor="{anchor}"'
        f' font-weight="bold">{xml_text(text)}</text>',
    ]


def _stacked(
    times: np.ndarray, values: np.ndarray, names: list[str], t_end: int, x: XScale, y: YScale
) -> list[str]:
    """The groups' live bytes (replay_groups) as areas stacked in the order of their
    names, in steps: a pixel column with events takes its last value."""
    columns = np.floor(x(times)).astype(np.int64)
    last = np.r_[np.flatnonzero(columns[1:] != columns[:-1]), len(times) - 1]
    xs = np.r_[columns[last], x(t_end)].astype(np.float64)
    tops = np.cumsum(np.maximum(values[:, last], 0), axis=0)
    out = []
    for g, name in enumerate(names):
        upper = tops[g]
        lower = tops[g - 1] if g else np.zeros(len(last))
        # each value from its column to the next one's: two points a column
        px = np.repeat(xs, 2)[1:-1]
        top_points = zip(px.tolist(), np.repeat(upper, 2).tolist(), strict=True)
        bottom_points = zip(px[::-1].tolist(), np.repeat(lower, 2)[::-1].tolist(), strict=True)
        points = " ".join(f"{a:.1f},{y(v):.1f}" for a, v in [*top_points, *bottom_points])
        color = AREA_COLORS[g % len(AREA_COLORS)]
        out.append(
            f'<polygon points="{points}" fill="{color}" stroke="none"'
            f' opacity="0.8"><title>{xml_text(name)}</title></polygon>'
        )
    return out


def _areas_legend(names: list[str]) -> tuple[list[str], int]:
    """The areas' colours under the plot, a group a row of as many as the width holds (a
    long name, a C++ function's, shortened, whole in its tooltip), and its rows."""
    rows: list[list[tuple[int, str]]] = [[]]
    used = 0
    for g, name in enumerate(names):
        shown = name if len(name) <= LEGEND_NAME else name[: LEGEND_NAME - 1] + "\u2026"
        step = 30 + 7 * len(shown)
        if rows[-1] and used + step > WIDTH - LEFT - RIGHT:
            rows.append([])
            used = 0
        rows[-1].append((g, shown))
        used += step
    out = []
    for r, row in enumerate(rows):
        legend_y = HEIGHT + 4 + LEGEND_ROW * r
        out.append("<g>")
        px = LEFT
        for g, shown in row:
            color = AREA_COLORS[g % len(AREA_COLORS)]
            out.append(
                f'<rect x="{px}" y="{legend_y - 10}" width="14" height="10" fill="{color}">'
                f"<title>{xml_text(names[g])}</title></rect>"
            )
            out.append(f'<text x="{px + 18}" y="{legend_y}">{xml_text(shown)}</text>')
            px += 30 + 7 * len(shown)
        out.append("</g>")
    return out, len(rows)


def _legend(heaps: list[str], rss: bool, marks: bool) -> list[str]:
    items = [(COLORS[h], f"{h} heap", "") for h in heaps]
    items += [(RSS_COLOR, "RSS (process)", ' stroke-dasharray="5,3"')] * rss
    items += [(MARK_COLOR, "mark", ' stroke-dasharray="3,3"')] * marks
    out, px = [], LEFT
    legend_y = TOP - 14
    for color, name, dash in items:
        out.append(
            f'<line x1="{px}" y1="{legend_y - 4}" x2="{px + 22}" y2="{legend_y - 4}"'
            f' stroke="{color}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{px + 27}" y="{legend_y}">{xml_text(name)}</text>')
        px += 40 + 7 * len(name)
    out.append(
        f'<text x="{px}" y="{legend_y}" fill="#333">line: estimated live bytes;'
        " shaded: peak of each interval; dot: the peak</text>"
    )
    return out
