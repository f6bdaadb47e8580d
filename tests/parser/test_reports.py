"""The reports of issue 4 on real runs of the sites fixture: SVG call graph (real dot),
collapsed stacks, JSON, pprof profile.proto (read back by the real `go tool pprof`),
--base diffs with sampling tolerances, focus/ignore, and user errors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from support.jeprof import assert_same_profile, jeprof_text, to_jeprof
from support.paths import MEM_PARSER
from support.profiling import SITES_EXACT, profile_run, run_parser
from support.reports import go_pprof, go_pprof_top, text_rows
from support.sampling_math import assert_estimate, relative_sd
from support.synthetic_heaps import named_stacks

from mem_profiler.cmd.mem_parser import main
from mem_profiler.parser.model.aggregate import aggregate
from mem_profiler.parser.model.call_graph import call_graph
from mem_profiler.parser.model.diff import subtract
from mem_profiler.parser.read.heap_file import parse_heap, read_heap
from mem_profiler.parser.report.dot import format_dot
from mem_profiler.parser.report.json_table import format_json
from mem_profiler.parser.report.pprof import format_pprof
from mem_profiler.parser.report.text import format_text
from mem_profiler.parser.symbols.names import short_name
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

SVG = "{http://www.w3.org/2000/svg}"
MiB = 1 << 20
# --base: site_pages grows from OLD_PAGES to NEW_PAGES blocks of 4096 B (and its calloc'd
# array of pointers by 8 B a block); site_small stays, site_transient frees everything.
OLD_PAGES, NEW_PAGES, SMALL, TRANSIENT = 4096, 12288, 4096, 8


@pytest.fixture(scope="module")
def captures(build_fixture, tmp_path_factory) -> dict[str, Path]:
    """Two sampled captures (-c 1024) of sites, site_pages grown between them."""
    exe = build_fixture("sites")
    out = tmp_path_factory.mktemp("captures")
    found = {"exe": exe}
    for name, pages in (("old", OLD_PAGES), ("new", NEW_PAGES)):
        proc, files = profile_run([exe, pages, SMALL, TRANSIENT], out / f"{name}_", 1024)
        assert proc.returncode == 0 and len(files) == 1, proc.stderr
        found[name] = files[0]
    return found


def test_svg_legend_and_top_node_agree_with_text(sites_exact, tmp_path):
    exe, heap = sites_exact
    total_line, rows = text_rows(run_parser("-p", exe, "-f", heap, "-t").stdout)
    svg = tmp_path / "graph.svg"
    run_parser("-p", exe, "-f", heap, "-s", "-o", svg)
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    groups = {
        g.attrib["id"]: ["".join(t.itertext()) for t in g.iter(f"{SVG}text")]
        for g in root.iter(f"{SVG}g")
    }
    legend = next(texts for texts in groups.values() if texts and texts[0] == exe.name)
    total = total_line.split()[1]  # "Total: 4.9 MB"
    assert f"Total MB: {total}" in legend
    (kind,) = [line for line in legend if line.startswith("Type: ")]
    assert (
        kind
        == "Type: inuse_space (kB, MB, GB = 2^10, 2^20, 2^30 bytes, as jeprof and pprof print them)"
    )
    flat, flat_pct, cum, cum_pct = rows["site_pages"]
    assert next(iter(rows)) == "site_pages"
    node = next(
        texts
        for gid, texts in groups.items()
        if gid.startswith("node") and texts[0] == "site_pages"
    )
    assert node[1:] == [f"{flat} MB ({flat_pct})", f"of {cum} MB ({cum_pct})"]
    main_node = next(
        texts for gid, texts in groups.items() if gid.startswith("node") and texts[0] == "main"
    )
    assert main_node[2] == f"of {rows['main'][2]} MB ({rows['main'][3]})"
    edge_labels = [
        t.strip() for gid, texts in groups.items() if gid.startswith("edge") for t in texts
    ]
    assert f"{flat} MB" in edge_labels  # main -> site_pages
    # Without -o the SVG goes to stdout, as the seed tool's -s did.
    assert run_parser("-p", exe, "-f", heap, "-s").stdout == svg.read_text()


def test_svg_drops_small_nodes_and_keeps_the_top_ones(sites_exact, tmp_path):
    exe, heap = sites_exact
    svg = tmp_path / "graph.svg"
    run_parser("-p", exe, "-f", heap, "-s", "-o", svg, "--nodecount", "3", "--nodefraction", "0.01")
    text = "\n".join("".join(t.itertext()) for t in ET.parse(svg).getroot().iter(f"{SVG}text"))
    assert re.search(r"Dropped \d+ nodes \(cum <= [\d.]+ kB\)", text)  # the printf chain
    assert "Showing top 3 nodes out of 6" in text
    assert "site_pages" not in text  # cum 79.5%: below the three 100% callers


def hand_profile(stacks: list[tuple[list[str], float]]) -> SymbolizedProfile:
    """Named stacks (leaf first) with their inuse_space values."""
    values = np.zeros((len(stacks), 4))
    values[:, 0] = [v for _, v in stacks]
    prof = parse_heap("heap_v2/1\nMAPPED_LIBRARIES:\n")
    return named_stacks(prof, [s for s, _ in stacks], values)


def test_graph_edges_through_dropped_nodes_are_dotted_or_redundant():
    # b (5) falls under nodefraction 0.1: a -> c goes through it in one stack, dotted.
    sym = hand_profile([(["c", "b", "a"], 5), (["c", "a"], 50), (["d", "a"], 45)])
    graph = call_graph(sym, nodefraction=0.1)
    assert graph.names == ["a", "c", "d"] and graph.dropped_nodes == 1
    edges = {(graph.names[e.caller], graph.names[e.callee]): e for e in graph.edges}
    assert set(edges) == {("a", "c"), ("a", "d")}
    assert edges["a", "c"].residual and edges["a", "c"].weight == 55
    assert not edges["a", "d"].residual
    dot = format_dot(graph, "hand")
    assert re.search(r'N1 -> N2 \[label=" 0\.0 MB".* style=dotted\b', dot)
    assert "Dropped 1 node (cum <= 10 B)" in dot

    # y falls: the dotted a -> c is left out, a -> b -> c already leads there.
    redundant = hand_profile([(["c", "y", "a"], 2), (["c", "b", "a"], 50)])
    graph = call_graph(redundant, nodefraction=0.1)
    names = [(graph.names[e.caller], graph.names[e.callee]) for e in graph.edges]
    assert sorted(names) == [("a", "b"), ("b", "c")]


def test_collapsed_stacks_hold_exact_bytes(sites_exact):
    exe, heap = sites_exact
    lines = run_parser("-p", exe, "-f", heap, "--collapsed").stdout.splitlines()
    stacks = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in lines}
    pages, small, _ = SITES_EXACT
    root = "_start;__libc_start_main;__libc_start_call_main;main"
    assert stacks[f"{root};site_pages"] == pages * (4096 + 8)
    assert stacks[f"{root};site_small"] == small * (256 + 8)
    assert (
        sum(stacks.values())
        == json.loads(run_parser("-p", exe, "-f", heap, "--json").stdout)["total"]
    )
    alloc = run_parser("-p", exe, "-f", heap, "--collapsed", "--alloc_objects").stdout
    assert f"{root};site_transient {SITES_EXACT[2]}\n" in alloc


def test_no_output_chosen_is_the_text_table(sites_exact, tmp_path):
    """`mem_parser -f FILE`, nothing else: the table -t prints, what the program kept
    (site_pages' blocks, exactly, at -c 1); -o alone writes it to a file."""
    exe, heap = sites_exact
    plain = run_parser("-p", exe, "-f", heap)
    assert plain.returncode == 0 and plain.stdout == run_parser("-p", exe, "-f", heap, "-t").stdout
    _, rows = text_rows(plain.stdout)
    pages = SITES_EXACT[0] * (4096 + 8) / MiB
    assert float(rows["site_pages"][0]) == pytest.approx(pages, abs=0.05)
    run_parser("-p", exe, "-f", heap, "-o", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_text() == plain.stdout


def test_json_table_and_metadata(sites_exact):
    exe, heap = sites_exact
    doc = json.loads(run_parser("-p", exe, "-f", heap, "--json", "--nodecount", "2").stdout)
    prof = read_heap(heap)
    assert (doc["program"], doc["heap_file"], doc["rate"], doc["pid"]) == (
        str(exe),
        str(heap),
        1,
        prof.pid,
    )
    assert doc["exe"] == prof.exe and doc["index"] == "inuse_space" and doc["unit"] == "bytes"
    assert doc["window_ns"]["start"] <= doc["window_ns"]["end"] and doc["base"] is None
    pages, small, _ = SITES_EXACT
    assert doc["rows"] == [
        {"name": "site_pages", "flat": pages * 4104.0, "cum": pages * 4104.0},
        {"name": "site_small", "flat": small * 264.0, "cum": small * 264.0},
    ]
    total_line, _ = text_rows(run_parser("-p", exe, "-f", heap, "-t").stdout)
    assert total_line == f"Total: {doc['total'] / MiB:.1f} MB"


def test_go_pprof_reads_our_profile_and_agrees_with_text(captures, tmp_path):
    exe, heap = captures["exe"], captures["new"]
    out = tmp_path / "heap.pb.gz"
    report = run_parser("-p", exe, "-f", heap, "-t", "--pprof", out).stdout
    total_line, rows = text_rows(report)
    total, theirs = go_pprof_top(out, tmp_path)
    tolerance = 0.05 * MiB + 0.01 * MiB  # ours print 0.1 MB, pprof's 0.01 MB or finer
    assert abs(total - float(total_line.split()[1]) * MiB) <= tolerance
    by_name = {name: (flat, cum) for name, flat, cum in theirs}
    for name, (flat, _, cum, _) in list(rows.items())[:5]:
        assert name in by_name, f"{name} missing from go tool pprof -top"
        assert abs(by_name[name][0] - float(flat) * MiB) <= tolerance, name
        assert abs(by_name[name][1] - float(cum) * MiB) <= tolerance, name
    ranked = [name for name, flat, _ in theirs if flat]
    assert ranked == [name for name in rows if name in ranked]


def test_jeprof_and_go_pprof_agree_with_text_through_their_outputs(captures, tmp_path):
    """One capture, three readers: mem_parser -t, jeprof on the heap_v2 text --jeprof
    writes and go tool pprof on the profile.proto --pprof writes show the same total and
    the same sites in the same order, with the same figures."""
    exe, heap = captures["exe"], captures["new"]
    text, pb = to_jeprof(heap, tmp_path / "new.heap_v2"), tmp_path / "new.pb.gz"
    report = run_parser("-p", exe, "-f", heap, "-t", "--pprof", pb).stdout
    assert run_parser("-p", exe, "-f", text, "-t").stdout == report
    total_line, rows = text_rows(report)
    ours = float(total_line.split()[1]) * MiB
    jeprof_total, jeprof_rows = jeprof_text(exe, text)
    pprof_total, pprof_rows = go_pprof_top(pb, tmp_path)
    # jeprof scales each stack's samples by their average size, which for these stacks of
    # one size each is the sum of their weights that -t shows: the same figures, printed
    # to 0.1 MB (test_jeprof_reads_our_converted_file_and_agrees's tolerance); pprof's as
    # in test_go_pprof_reads_our_profile_and_agrees_with_text
    assert jeprof_total * MiB == pytest.approx(ours, rel=0.01)
    tolerance = 0.05 * MiB + 0.01 * MiB
    assert abs(pprof_total - ours) <= tolerance
    sites = ["site_pages", "site_small"]
    assert [n for n, flat, _ in jeprof_rows if n in sites and flat] == sites
    assert [n for n, flat, _ in pprof_rows if n in sites and flat] == sites
    assert [n for n in rows if n in sites] == sites
    jeprof_by_name = {name: (flat, cum) for name, flat, cum in jeprof_rows}
    pprof_by_name = {name: (flat, cum) for name, flat, cum in pprof_rows}
    for name in sites:
        flat, _, cum, _ = rows[name]
        assert jeprof_by_name[name] == (float(flat), float(cum)), name
        assert abs(pprof_by_name[name][0] - float(flat) * MiB) <= tolerance, name
        assert abs(pprof_by_name[name][1] - float(cum) * MiB) <= tolerance, name


def test_jeprof_keeps_the_stacks_focus_and_ignore_keep(sites_exact, tmp_path):
    """--focus and --ignore choose the stacks of the text as of every report; its
    metadata stay whole."""
    exe, heap = sites_exact
    out, filters = tmp_path / "f.heap_v2", ("--focus", "^site_", "--ignore", "small")
    run_parser("-p", exe, "-f", heap, "--jeprof", out, *filters)
    selected = run_parser("-p", exe, "-f", heap, "-t", *filters).stdout
    assert run_parser("-p", exe, "-f", out, "-t").stdout == selected
    whole, kept = read_heap(heap), read_heap(out)
    assert 0 < len(kept.offsets) < len(whole.offsets)
    assert_same_profile(
        kept,
        dataclasses.replace(
            whole,
            addrs=kept.addrs,
            offsets=kept.offsets,
            cur_objs=kept.cur_objs,
            cur_bytes=kept.cur_bytes,
            acc_objs=kept.acc_objs,
            acc_bytes=kept.acc_bytes,
            estimates=kept.estimates,
        ),
    )


def test_jeprof_alone_reads_no_program(build_fixture, tmp_path):
    """The addresses are written as they are, for jeprof to symbolize: the program that
    ran need not be there."""
    exe = tmp_path / "sites"
    exe.write_bytes(build_fixture("sites").read_bytes())
    exe.chmod(0o755)
    proc, files = profile_run([exe, "10", "10", "1"], tmp_path / "g_", 1)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    exe.unlink()
    done = run_parser("-f", files[0], "--jeprof", tmp_path / "g.heap_v2")
    assert done.stdout == done.stderr == ""
    assert_same_profile(read_heap(tmp_path / "g.heap_v2"), read_heap(files[0]))


def test_pprof_keeps_functions_that_share_a_short_name(tmp_path):
    sym = hand_profile([(["f(int)", "main"], 3 * MiB), (["f(double)", "main"], MiB)])
    out = tmp_path / "f.pb.gz"
    out.write_bytes(format_pprof(sym))
    net, rows = go_pprof_top(out, tmp_path)
    assert net == 4 * MiB
    assert {name: (flat, cum) for name, flat, cum in rows} == {
        "f": (4 * MiB, 4 * MiB),
        "main": (0, 4 * MiB),
    }


@pytest.mark.parametrize(
    "full, short",
    [
        (
            "std::basic_ostream<char, std::char_traits<char> >& std::operator<<"
            " <std::char_traits<char> >(std::basic_ostream<char, std::char_traits<char> >&,"
            " char const*)",
            "std::operator<<",
        ),
        ("void* operator new(unsigned long)", "operator new"),
        ("bool std::operator==<char>(std::string const&, char const*)", "std::operator=="),
        ("ns::Foo::operator bool() const", "ns::Foo::operator bool"),
        (
            "std::vector<int, std::allocator<int> >::operator[](unsigned long)",
            "std::vector::operator[]",
        ),
    ],
)
def test_cxx_operators_are_shown_without_return_type(full, short):
    assert short_name(full) == short


def test_base_reports_the_growth_and_nothing_else(captures):
    exe, old, new = captures["exe"], captures["old"], captures["new"]
    doc = json.loads(run_parser("-p", exe, "-f", new, "--base", old, "--json").stdout)
    rows = {row["name"]: row for row in doc["rows"]}
    growth = (NEW_PAGES - OLD_PAGES) * (4096 + 8)
    # Each capture is an independent estimate: their variances add.
    sd = (
        math.hypot(
            relative_sd(NEW_PAGES, 4096, 1024) * NEW_PAGES * 4096,
            relative_sd(OLD_PAGES, 4096, 1024) * OLD_PAGES * 4096,
        )
        / growth
    )
    assert_estimate(rows["site_pages"]["flat"], growth, sd, 0.05)
    others = {name: row["flat"] for name, row in rows.items() if name != "site_pages"}
    assert max(map(abs, others.values())) <= 0.01 * growth, others
    assert doc["base"] == str(old)

    # Shrinkage, the other way round: the text report prints it negative.
    report = run_parser("-p", exe, "-f", old, "--base", new, "-t").stdout
    total_line, text = text_rows(report)
    assert total_line.startswith("Total: -") and text["site_pages"][0].startswith("-")
    assert next(iter(text)) == "site_pages"


def test_base_in_every_format(captures, tmp_path):
    exe, old, new = captures["exe"], captures["old"], captures["new"]
    svg, flame, pb = tmp_path / "d.svg", tmp_path / "d.html", tmp_path / "d.pb.gz"
    run_parser(
        "-p", exe, "-f", new, "--base", old, "-s", "-o", svg, "--flame", flame, "--pprof", pb
    )
    assert f"Base: {old}" in "".join(ET.parse(svg).getroot().itertext())
    assert '"diff":true' in flame.read_text()
    total, theirs = go_pprof_top(pb, tmp_path)
    doc = json.loads(run_parser("-p", exe, "-f", new, "--base", old, "--json").stdout)
    assert abs(total - doc["total"]) <= 0.01 * MiB
    assert theirs[0][0] == "site_pages"
    collapsed = run_parser("-p", exe, "-f", new, "--base", old, "--collapsed").stdout
    assert collapsed.splitlines()[0].split(";")[-1].startswith("site_pages ")


def test_base_shares_are_of_the_change_as_in_go_pprof(tmp_path):
    # 20 MiB moved from one stack to another: the net is 0, so the shares are of what
    # changed either way (40 MiB), as go tool pprof takes them, not of the net.
    old = hand_profile([(["grows", "main"], 10 * MiB), (["shrinks", "main"], 30 * MiB)])
    new = hand_profile([(["grows", "main"], 30 * MiB), (["shrinks", "main"], 10 * MiB)])
    diff = subtract(new, old)
    lines = format_text(aggregate(diff)).splitlines()
    assert lines[:2] == [
        "Total: 0.0 MB",
        "Shares (%) are of 40.0 MB changed, growth and shrinkage added",
    ]
    ours = {line.split()[-1]: float(line.split()[1][:-1]) for line in lines[2:]}
    assert ours == {"grows": 50.0, "shrinks": -50.0}  # main: 0 flat, 0 cum
    out = tmp_path / "d.pb.gz"
    out.write_bytes(format_pprof(diff))
    top = go_pprof(tmp_path, "-top", "-sample_index=inuse_space", out).stdout
    theirs = {m[2]: float(m[1]) for m in re.finditer(r"^ *\S+ +(-?[\d.]+)% .* (\w+)$", top, re.M)}
    assert theirs == {name: abs(share) for name, share in ours.items()}, top  # unsigned there
    doc = json.loads(format_json(aggregate(diff), diff.profile, program=None))
    assert (doc["total"], doc["share_of"]) == (0.0, 40 * MiB)
    graph = call_graph(diff)
    assert (graph.total, graph.share_of) == (0.0, 40 * MiB)
    node = dict(zip(graph.names, graph.flat.tolist(), strict=True))
    assert node == {"grows": 20 * MiB, "shrinks": -20 * MiB}


def test_focus_and_ignore_select_stacks(sites_exact):
    exe, heap = sites_exact
    total_line, rows = text_rows(
        run_parser("-p", exe, "-f", heap, "-t", "--focus", "^site_", "--ignore", "small").stdout
    )
    assert set(rows) == {
        "site_pages",
        "main",
        "__libc_start_call_main",
        "__libc_start_main",
        "_start",
    }
    assert total_line == f"Total: {SITES_EXACT[0] * 4104 / MiB:.1f} MB"


def test_several_outputs_at_once(sites_exact, tmp_path):
    exe, heap = sites_exact
    flame, pb = tmp_path / "f.html", tmp_path / "p.pb.gz"
    text = run_parser("-p", exe, "-f", heap, "-t", "--flame", flame, "--pprof", pb).stdout
    assert text.startswith("Total: ") and flame.read_text().startswith("<!DOCTYPE html>")
    assert pb.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert sorted(os.listdir(tmp_path)) == ["f.html", "p.pb.gz"]  # no temporary files left


@pytest.mark.parametrize(
    "args, expect",
    [
        ("-t --base {dir}/missing.heap", "{dir}/missing.heap does not exist"),
        ("-t --base {dir}", "{dir} is a directory"),
        ("--pprof", "Option '--pprof' requires an argument"),
        ("--pprof -t", "expected a file name, found '-t'"),
        ("-t --focus (", "'(' is not a valid regular expression"),
        ("-t --ignore [z-a]", "is not a valid regular expression"),
        ("-t --json", "choose one output"),
        ("-t --timeline-top 3", "--timeline-top N goes with --timeline SVG."),
        ("--timeline {dir}/t.svg --timeline-top 7", "is not in the range 1<=x<=6"),
        ("--flame {dir}/f.html -o {dir}/x", "--flame, --pprof and --jeprof take their own path"),
        ("--flame {dir}/nowhere/f.html", "cannot write {dir}/nowhere/f.html"),
        ("--jeprof", "Option '--jeprof' requires an argument"),
        ("--jeprof {dir}/j -o {dir}/x", "--flame, --pprof and --jeprof take their own path"),
        ("--jeprof {dir}/nowhere/j", "cannot write {dir}/nowhere/j"),
        ("--jeprof {dir}/j --base {dir}/old.heap", "--jeprof writes one profile's samples"),
        ("-t --nodefraction 2", "--nodefraction"),
    ],
)
def test_bad_input_is_one_line(sites_exact, tmp_path, capsys, args, expect):
    exe, heap = sites_exact
    argv = ["-p", str(exe), "-f", str(heap), *args.format(dir=tmp_path).split()]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert (done.value.code, out) == (2, "")
    assert err.startswith("mem_parser: ") and err.count("\n") == 1, err
    assert expect.format(dir=tmp_path) in err and "Traceback" not in err


def test_base_of_another_build_is_refused(sites_exact, build_fixture, tmp_path, capsys):
    exe, heap = sites_exact
    other = build_fixture("sites", "-O2", output="sites_O2")
    proc, files = profile_run([other, *SITES_EXACT], tmp_path / "o_", 1)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    with pytest.raises(SystemExit) as done:
        main(["-p", str(exe), "-f", str(heap), "-t", "--base", str(files[0])])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"mem_parser: --base {files[0]}: ") and "--allow-mismatch" in err


def test_bulk_reader_reads_what_the_line_reader_reads(sites_exact, tmp_path):
    _, heap = sites_exact
    text = to_jeprof(heap, tmp_path / "sites.txt").read_text()  # the capture as heap_v2
    bulk = parse_heap(text)
    # A blank line between two stacks is not how the sampler writes: the line reader runs.
    first_counter = text.index("\n  t*:", text.index("\n@")) + 1
    lines = parse_heap(text[:first_counter] + text[first_counter:].replace("]\n", "]\n\n", 1))
    for name in ("addrs", "offsets", "cur_objs", "cur_bytes", "acc_objs", "acc_bytes"):
        assert np.array_equal(getattr(bulk, name), getattr(lines, name)), name
    assert bulk.mappings == lines.mappings and bulk.build_ids == lines.build_ids


@pytest.mark.parametrize(
    "stacks",
    [
        [[0x401A2B, 0x7F12A0029D90, 0x1, 0xFFFFFFFFFFFFFFFF], [0x2]],  # mixed widths
        [[0x55D0C0A01234, 0x7F12A0029D90], [0x7FFD10000101]],  # one even width
        [[0x401A2, 0x401B3], [0xFFFFF]],  # one odd width
    ],
)
def test_bulk_reader_handles_every_address_width(stacks):
    text = "heap_v2/1\n" + "".join(
        "@ " + " ".join(map(hex, s)) + f"\n  t*: {i}: 8 [2: 16]\n" for i, s in enumerate(stacks)
    )
    heap = parse_heap(text + "\nMAPPED_LIBRARIES:\n")
    assert heap.stacks == [tuple(s) for s in stacks] and heap.addrs.dtype == np.uint64
    assert heap.acc_bytes.tolist() == [16, 16] and heap.cur_objs.tolist() == [0, 1]


def test_full_names_reach_every_output(build_fixture, tmp_path):
    exe = build_fixture("cxx_new")
    proc, files = profile_run([exe, 300], tmp_path / "c_", 1)
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    svg, flame, pb = tmp_path / "g.svg", tmp_path / "f.html", tmp_path / "p.pb.gz"

    def names_in(*args: str | Path) -> str:
        """The text of one report: its names, whatever the format."""
        done = run_parser("-p", exe, "-f", files[0], *args)
        if svg in args:
            return "".join(ET.parse(svg).getroot().itertext())
        if flame in args:
            # escaped inside <script>
            return flame.read_text().replace("\\u003c", "<").replace("\\u003e", ">")
        if pb in args:  # -raw: the names as written (pprof's -top shortens C++ names itself)
            return go_pprof(tmp_path, "-raw", pb).stdout
        return done.stdout

    reserve = "std::vector<Widget*, std::allocator<Widget*> >::reserve(unsigned long)"
    for args in (
        ["-t"],
        ["--json"],
        ["--collapsed"],
        ["-s", "-o", svg],
        ["--flame", flame],
        ["--pprof", pb],
    ):
        full, short = names_in(*args, "--full-names"), names_in(*args)
        assert "make_widgets(int)" in full and reserve in full, args
        assert "make_widgets(int)" not in short and reserve not in short, args
        assert "make_widgets" in short and "std::vector::reserve" in short, args


# --- without -p: the program the file records ----------------------------------------


def test_without_p_the_recorded_program_is_read(sites_exact, tmp_path):
    exe, heap = sites_exact
    with_p, without_p = run_parser("-p", exe, "-f", heap, "-t"), run_parser("-f", heap, "-t")
    assert without_p.stdout == with_p.stdout and with_p.stderr == ""
    build_id = read_heap(heap).build_ids[str(exe)]
    assert without_p.stderr == (
        f"mem_parser: reading {exe}, the program that ran (build-id {build_id})\n"
    )
    leaks = subprocess.run([MEM_PARSER, "-f", heap, "--json"], capture_output=True, text=True)
    assert leaks.returncode == 0 and json.loads(leaks.stdout)["program"] == str(exe)


def test_without_p_a_program_gone_or_rebuilt_is_refused(build_fixture, tmp_path):
    exe = tmp_path / "sites"
    exe.write_bytes(build_fixture("sites").read_bytes())
    exe.chmod(0o755)
    proc, (heap,) = profile_run([exe, "10", "10", "1"], tmp_path / "r_", 1)
    rebuilt = build_fixture("sites", "-O2", output="sites_rebuilt")
    recorded = read_heap(heap).build_ids[str(exe)]
    exe.write_bytes(rebuilt.read_bytes())
    refused = subprocess.run([MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        f"mem_parser: {exe} is not the build that ran (build-id {read_build_id(rebuilt)}, the"
        f" profile's {recorded}): it was rebuilt; give the binary that ran with -p BIN.\n"
    )
    exe.unlink()
    gone = subprocess.run([MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True)
    assert gone.returncode == 2 and gone.stderr == (
        f"mem_parser: {exe}, the program that ran, is no longer there: give a copy of it with"
        " -p BIN (or its machine's root file system with --sysroot DIR).\n"
    )
    # -p stays for a copy elsewhere
    assert "site_pages" in run_parser("-p", build_fixture("sites"), "-f", heap, "-t").stdout


def read_build_id(path: Path) -> str | None:
    from mem_profiler.parser.elf.image import ElfImage

    return ElfImage(str(path)).build_id
