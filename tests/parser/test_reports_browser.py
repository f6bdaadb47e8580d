"""The SVG call graph and the HTML flame graph in a real headless Chromium: both draw
something, and the flame graph's click handler zooms and its search box highlights."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.chromium import chromium
from support.paths import MEM_PARSER
from support.png import assert_not_blank


@pytest.fixture(scope="module")
def pages(sites_exact, tmp_path_factory) -> dict[str, Path]:
    exe, heap = sites_exact
    out = tmp_path_factory.mktemp("pages")
    subprocess.run(
        [
            MEM_PARSER,
            "-p",
            exe,
            "-f",
            heap,
            "-s",
            "-o",
            out / "graph.svg",
            "--flame",
            out / "flame.html",
        ],
        check=True,
    )
    return {"svg": out / "graph.svg", "flame": out / "flame.html"}


def frames(dom: str) -> dict[str, str]:
    """{frame name: its style} of the flame graph's frames in a DOM dump."""
    return {
        m["name"]: m["style"]
        for m in re.finditer(
            r'<div class="frame[^"]*"[^>]*data-name="(?P<name>[^"]*)"[^>]*style="(?P<style>[^"]*)"',
            dom,
        )
    }


@pytest.mark.parametrize("page", ["svg", "flame"])
def test_page_draws_something(pages, tmp_path, page):
    png = tmp_path / "shot.png"
    chromium(
        f"--screenshot={png}",
        "--window-size=1200,800",
        pages[page].as_uri(),
        profile_dir=tmp_path / "profile",
    )
    assert_not_blank(png)


def test_flame_graph_is_self_contained(pages):
    html = pages["flame"].read_text()
    assert not re.search(r"""(src|href)\s*=|https?://|@import|url\(""", html)


def test_click_on_a_frame_zooms_into_it(pages, tmp_path):
    before = frames(
        chromium("--dump-dom", pages["flame"].as_uri(), profile_dir=tmp_path / "profile").stdout
    )
    assert "site_small" in before and "width: 100%" not in before["site_pages"]
    dom = chromium(
        "--dump-dom",
        pages["flame"].as_uri() + "?selftest=click:site_pages",
        profile_dir=tmp_path / "profile",
    ).stdout
    assert 'data-selftest="clicked"' in dom and 'data-zoom="site_pages"' in dom
    after = frames(dom)
    assert "left: 0%; width: 100%" in after["site_pages"]
    assert "site_small" not in after  # a sibling: outside the zoomed frame
    assert "width: 100%" in after["main"]  # an ancestor: kept above it, full width


def test_frames_show_their_size_and_share_without_hovering(pages, tmp_path):
    """A frame wide enough for it is labelled with its value and share, as memray's and
    speedscope's are; a narrow one with its name alone. The fixture's exact capture
    (sites.c at -c 1) keeps 1,000 blocks of 4096 B at site_pages, 4,000 of 256 B at
    site_small, and stdout's buffer of a few KiB under printf."""
    dom = chromium(
        "--dump-dom", "--window-size=1200,800", pages["flame"].as_uri(),
        profile_dir=tmp_path / "profile",
    ).stdout  # fmt: skip
    labels = dict(re.findall(r'<div class="frame[^"]*"[^>]*data-name="([^"]*)"[^>]*>([^<]*)<', dom))
    pages = re.fullmatch(r"site_pages \(3\.9 MB, (\d+\.\d)%\)", labels["site_pages"])
    small = re.fullmatch(r"site_small \(1\.0 MB, (\d+\.\d)%\)", labels["site_small"])
    assert pages is not None and small is not None, labels
    total = 1000 * 4096 + 4000 * 256
    assert abs(float(pages[1]) - 100 * 1000 * 4096 / total) < 0.6
    assert abs(float(small[1]) - 100 * 4000 * 256 / total) < 0.6
    assert labels["printf"] == "printf"  # a few KiB of 5 MB: a sliver
    # the header says once what the sizes' units are
    (info,) = re.findall(r'<div id="info"[^>]*>([^<]*)<', dom)
    assert info.startswith("Type: inuse_space (kB, MB, GB = 2^10, 2^20, 2^30 bytes"), info


def test_search_highlights_matching_frames(pages, tmp_path):
    dom = chromium(
        "--dump-dom",
        pages["flame"].as_uri() + "?selftest=search:^site_",
        profile_dir=tmp_path / "profile",
    ).stdout
    highlighted = set(re.findall(r'<div class="frame match"[^>]*data-name="([^"]*)"', dom))
    assert highlighted == {"site_pages", "site_small"}
    assert re.search(r'<span id="matched">Matched: [\d.]+ MB \(99\.\d+%\)</span>', dom)
