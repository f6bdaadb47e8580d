"""The reports read back as a user gets them: the installed mem_parser and the real
`go tool pprof` run, and the figures each format shows per node taken from its output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

MiB = 1 << 20
# -t and the call graph print MB (MiB) to one decimal, `go tool pprof` to two: a figure
# within half of that
PRINTED_MB, PPROF_PRINTED_MB = 0.05 * MiB, 0.005 * MiB
_ROW_RE = re.compile(r"^\s*(-?[\d.]+)\s+(-?[\d.]+%|nan)\s+\S+\s+(-?[\d.]+)\s+(-?[\d.]+%|nan) (.+)$")
_PPROF_UNITS = {"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
_SVG = "{http://www.w3.org/2000/svg}"
_XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"
_NODE_TOOLTIP_RE = re.compile(r"(.+) \((-?[\d.]+) MB\)")
_FLAME_DATA_RE = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)


def text_rows(report: str) -> tuple[str, dict[str, tuple[str, str, str, str]]]:
    """-t's `Total:` line and {name: (flat, flat%, cum, cum%)} as printed (the lines on
    the peak and on what a diff's shares are of, under Total, left out)."""
    lines = [
        line
        for line in report.splitlines()
        if not line.startswith(("Peak: ", "Shares (%) are of "))
    ]
    rows: dict[str, tuple[str, str, str, str]] = {}
    for line in lines[1:]:
        m = _ROW_RE.match(line)
        assert m is not None, line
        rows[m[5]] = (m[1], m[2], m[3], m[4])
    return lines[0], rows


def graph_cums(svg: str) -> dict[str, float]:
    """{name: cum in bytes} of a call graph's nodes (-s), from each node's tooltip,
    `name (12.5 MB)`."""
    root = ET.fromstring(svg)
    found: dict[str, float] = {}
    for node in root.iter(f"{_SVG}g"):
        if node.get("class") == "node" and node.findtext(f"{_SVG}title") != "legend":
            link = next(node.iter(f"{_SVG}a"))
            title = link.get(_XLINK_TITLE)
            assert title is not None
            m = _NODE_TOOLTIP_RE.fullmatch(title)
            assert m is not None, title
            found[m[1]] = float(m[2]) * MiB
    return found


def flame_values(page: str) -> dict[str, float]:
    """{name: value} of a flame graph page's data: the values of its frames of each name
    added up (a function's whole, where it does not call itself)."""
    m = _FLAME_DATA_RE.search(page)
    assert m is not None, "no data in the flame graph page"
    data = json.loads(m[1])
    found: dict[str, float] = {}
    for name, value in zip(data["name"], data["value"], strict=True):
        found[data["names"][name]] = found.get(data["names"][name], 0.0) + value
    return found


def go_environment(tmp_path: Path) -> dict[str, str]:
    """The environment of the real `go` command, kept off the network and out of the
    user's home."""
    home = tmp_path / "gohome"
    home.mkdir(exist_ok=True)
    return dict(
        os.environ,
        HOME=str(home),
        GOCACHE=str(home / "cache"),
        GOPATH=str(home / "go"),
        GOFLAGS="-mod=mod",
        GOPROXY="off",
        GOTOOLCHAIN="local",
        PPROF_TMPDIR=str(home),
    )


def go_pprof(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """The real `go tool pprof`."""
    env = go_environment(tmp_path)
    return subprocess.run(
        ["go", "tool", "pprof", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )


def pprof_amount(text: str) -> float:
    """An amount as `go tool pprof` prints it (`50394.62kB`, `70MB`), in bytes."""
    m = re.fullmatch(r"(-?[\d.]+)([a-zA-Z]*)", text)
    assert m is not None, text
    return float(m[1]) * _PPROF_UNITS.get(m[2], 1)


def go_pprof_top(
    profile: Path, tmp_path: Path, *options: str
) -> tuple[float, list[tuple[str, float, float]]]:
    """`go tool pprof -top` of a profile (with `options`: `-lines`), every node shown: the
    sum of their flat values (pprof's "total" is the sum of |values|, more than the net
    in a diff) and the (name, flat, cum) rows, in bytes."""
    done = go_pprof(
        tmp_path, "-top", "-sample_index=inuse_space", "-nodefraction=0", *options, profile
    )
    accounting = re.search(r"accounting for (\S+),", done.stdout)
    assert accounting is not None, done.stdout
    net = pprof_amount(accounting[1])
    return net, [
        (m[6], pprof_amount(m[1]), pprof_amount(m[4]))
        for m in re.finditer(
            r"^ *(-?[\d.]+\w*) +(\S+)% +(\S+)% +(-?[\d.]+\w*) +(\S+)% +(.+)$", done.stdout, re.M
        )
    ]
