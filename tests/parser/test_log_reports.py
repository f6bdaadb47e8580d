"""Log-mode reports of real runs under the sampler: the timeline and the peak of a known
memory curve, what was live at a time and between marks, and leak checks (the window's,
and msMemScope's between mstx marks or NVTX ranges, through the stand-in libraries), by
mem_parser and by the Python API."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from support.profiling import profile_run, total
from support.sampling_math import assert_estimate, relative_sd

from mem_profiler.cmd.mem_parser import main
from mem_profiler.parser.log.analysis import NEVER, Leak, open_window_log, peak, replay
from mem_profiler.parser.msmemscope import analyzers
from mem_profiler.parser.report.leaks import format_leaks

KiB, MiB = 1024, 1 << 20
RATE = 1024
# log_curve.c: a ramp of 8192 x 4 KiB kept, then a spike of 64 x 1 MiB held ~300 ms
RAMP, SPIKE = 8192 * 4 * KiB, 64 * MiB
RAMP_SD = relative_sd(8192, 4 * KiB, RATE)  # the spike's blocks are always sampled


def assert_peak_shown(text: str) -> None:
    """The peak of the ramp and the spike in a report's "peak[:] N MB": the estimate
    within 5 sd of the ramp's sampling, plus the rounding to 0.1 MB."""
    m = re.search(r"peak:? ([\d.]+) MB", text)
    assert m is not None, text
    shown = float(m[1])
    assert abs(shown * MiB - (RAMP + SPIKE)) <= 5 * RAMP_SD * RAMP + 0.05 * MiB, text


# log_steps.c: each step keeps 2048 x 4 KiB from step_leak
STEP_LEAK = 2048 * 4 * KiB
STEP_LEAK_SD = relative_sd(2048, 4 * KiB, RATE)


def cli(capsys, *args: object) -> tuple[str, str]:
    """mem_parser in this process, which must succeed: (stdout, stderr)."""
    main([str(a) for a in args])
    return capsys.readouterr()


def table(text: str) -> dict[str, float]:
    """{function: flat MB} of a -t report."""
    rows = [line.split() for line in text.splitlines()[1:]]
    return {row[5]: float(row[0]) for row in rows}


def top_function(text: str) -> str:
    return text.splitlines()[1].split()[5]


@pytest.fixture(scope="module")
def curve(build_fixture, tmp_path_factory):
    """log_curve run under --mode log: (program, .heap, capture)."""
    exe = build_fixture("log_curve")
    proc, heaps = profile_run([exe], tmp_path_factory.mktemp("curve") / "c_", RATE, "--mode", "log")
    assert proc.returncode == 0 and len(heaps) == 1, proc.stderr
    return exe, heaps[0], open_window_log(heaps[0])


def mark_ms(cap, text: str) -> float:
    return next(m.time_ns for m in cap.log.marks if m.text == text) / 1e6


def test_timeline_peak_is_the_spike(curve):
    exe, heap, cap = curve
    tl = cap.log.timeline
    assert (tl["heap"] == 0).all() and len(tl) >= 9  # ~1.1 s, a record every 100 ms
    truth = RAMP + SPIKE
    k = int(tl["peak"].argmax())
    assert_estimate(float(tl["peak"][k]), truth, RAMP_SD * RAMP / truth, 0.05)
    # the first interval at the peak is the one in which the spike was completed
    found = peak(cap)
    assert found.interval is not None
    start, end = found.interval
    assert start < found.time_ns <= end and end - start <= 150e6
    assert mark_ms(cap, "spike") < found.time_ns / 1e6 < mark_ms(cap, "plateau")
    assert found.bytes == tl["peak"][k]  # the replay and the sampler's counter agree
    assert found.bytes == int(cap.profile.meta["peak_live_bytes"])


def test_at_during_the_spike_and_at_the_peak_name_the_spike(curve, capsys):
    exe, heap, cap = curve
    middle = (mark_ms(cap, "spike") + mark_ms(cap, "plateau")) / 2
    out, err = cli(capsys, "-p", exe, "-f", heap, "--at", f"{middle:.1f}")
    assert top_function(out) == "spike" and f"Live at {middle:.1f} ms" in err
    rows = table(out)
    assert abs(rows["spike"] - 64.0) <= 0.1
    assert_estimate(rows["ramp_up"] * MiB, RAMP, RAMP_SD, 0.05)

    out, err = cli(capsys, "-p", exe, "-f", heap, "--peak")
    assert top_function(out) == "spike"
    assert_peak_shown(err)
    # after the spike was freed, the ramp alone
    out, _ = cli(capsys, "-p", exe, "-f", heap, "--at", f"{mark_ms(cap, 'release') - 50:.1f}")
    assert top_function(out) == "ramp_up" and table(out).get("spike", 0.0) == 0.0


def test_a_moment_of_the_log_as_jeprof_text(curve, capsys, tmp_path):
    """--peak (as --at, --between) with --jeprof: what was live then, as heap_v2 text
    that reads back as the same report; the estimates, sums of weights of any value,
    exactly."""
    exe, heap, _ = curve
    out = tmp_path / "peak.heap_v2"
    _, err = cli(capsys, "-f", heap, "--peak", "--jeprof", out)
    assert_peak_shown(err)
    peak_text, _ = cli(capsys, "-p", exe, "-f", heap, "--peak")
    assert cli(capsys, "-p", exe, "-f", out, "-t")[0] == peak_text
    assert top_function(peak_text) == "spike"


def test_between_marks(curve, capsys):
    exe, heap, _ = curve
    out, err = cli(capsys, "-p", exe, "-f", heap, "--between", "spike", "plateau")
    assert top_function(out) == "spike" and abs(table(out)["spike"] - 64.0) <= 0.1
    assert "ramp_up" not in table(out) and "from 'spike'" in err
    out, _ = cli(capsys, "-p", exe, "-f", heap, "--between", "ramp", "spike", "--inuse_space")
    assert top_function(out) == "ramp_up"


def test_timeline_svg(curve, capsys, tmp_path):
    exe, heap, cap = curve
    svg = tmp_path / "t.svg"
    out, _ = cli(capsys, "-p", exe, "-f", heap, "--timeline", svg)
    assert out == ""
    root = ET.parse(svg).getroot()
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "time since the window's start (ms)" in texts
    assert any(t.startswith("memory (MB = 2^20 bytes;") for t in texts)
    assert {"ramp", "spike", "plateau", "release"} <= set(texts)
    (label,) = [t for t in texts if t.startswith("peak ") and "at " in t]
    assert_peak_shown(label)
    # --timeline adds its file to the usual report of the .heap
    out, _ = cli(capsys, "-p", exe, "-f", heap, "--timeline", tmp_path / "u.svg", "-t")
    assert out.startswith("Total:") and (tmp_path / "u.svg").is_file()


def test_window_leaks_of_a_clean_curve(curve, capsys):
    exe, heap, _ = curve
    out, _ = cli(capsys, "-p", exe, "-f", heap, "--leaks", "--json")
    leaks = json.loads(out)
    assert leaks["total_bytes"] < 64 * KiB  # stdio's buffer: everything else was freed


@pytest.fixture(scope="module")
def steps(log_steps_exe, tmp_path_factory):
    """log_steps {mstx,nvtx} x {leak,clean} under --mode log: {(marker, variant): (exe, heap)}."""
    exe = log_steps_exe
    out = tmp_path_factory.mktemp("steps")
    runs = {}
    for marker in ("mstx", "nvtx"):
        for variant in ("leak", "clean"):
            proc, heaps = profile_run(
                [exe, marker, variant], out / f"{marker}_{variant}_", RATE, "--mode", "log"
            )
            assert proc.returncode == 0 and len(heaps) == 1, proc.stderr
            runs[marker, variant] = exe, heaps[0]
    return runs


MARKS = {"mstx": "step start", "nvtx": "iteration"}


@pytest.mark.parametrize("marker", ["mstx", "nvtx"])
def test_mark_range_leaks_find_the_leaking_site(steps, marker, capsys):
    exe, heap = steps[marker, "leak"]
    for index in range(4):  # 4 steps, each followed by a marker
        leaks = analyzers.check_leaks(str(heap), MARKS[marker], index)
        printed = capsys.readouterr().out
        assert [leak.stack[0] for leak in leaks] == ["step_leak"], printed
        assert_estimate(leaks[0].bytes, STEP_LEAK, STEP_LEAK_SD, 0.05)
        assert printed.startswith(f"Leaks of '{MARKS[marker]}' #{index}-#{index + 1}")
    out, _ = cli(capsys, "-p", exe, "-f", heap, "--mark-leaks", MARKS[marker], "--start-index", 2)
    assert "\n    step_leak\n    main\n" in out


@pytest.mark.parametrize("marker", ["mstx", "nvtx"])
def test_mark_range_leaks_find_nothing_in_the_clean_variant(steps, marker, capsys):
    exe, heap = steps[marker, "clean"]
    for index in range(4):
        assert (
            analyzers.analyze(
                "leaks", input_path=str(heap), mstx_info=MARKS[marker], start_index=index
            )
            == []
        )
    assert capsys.readouterr().out.startswith("No leaks of")


def test_window_leaks_rank_by_estimated_bytes(steps, capsys):
    exe, heap = steps["mstx", "leak"]
    leaks = analyzers.window_leaks(str(heap))
    capsys.readouterr()
    assert [leak.stack[0] for leak in leaks[:2]] == ["step_leak", "model_init"]
    assert_estimate(leaks[0].bytes, 4 * STEP_LEAK, STEP_LEAK_SD / 2, 0.05)
    assert leaks[1].bytes == pytest.approx(4096 * KiB, rel=1e-3)
    assert leaks[0].first_ms < leaks[0].last_ms


def test_analyzer_api_and_errors(steps, capsys, tmp_path):
    exe, heap = steps["mstx", "leak"]
    assert analyzers.list_analyzers() == [
        "leaks",
        "window_leaks",
        "peak",
        "timeline",
        "compare",
        "export",
        "inefficient",
    ]
    config = analyzers.get_analyzer_config("leaks")
    assert [k for k, v in config.items() if v["required"]] == [
        "input_path",
        "mstx_info",
        "start_index",
    ]
    found = analyzers.analyze("peak", input_path=str(heap))
    assert found.heap == "host" and found.bytes > 4 * STEP_LEAK
    assert analyzers.timeline(str(heap), tmp_path / "a.svg").endswith("a.svg")
    for call, message in (
        (lambda: analyzers.get_analyzer_config("nope"), "no analyzer 'nope'"),
        (lambda: analyzers.analyze("leaks", input_path=str(heap)), "missing mstx_info"),
        (lambda: analyzers.check_leaks(str(heap), "step start", 4), "occurs 5 time(s)"),
        (lambda: analyzers.check_leaks(str(heap), "no such", 0), "its marks are"),
    ):
        with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--at", "99999"], "outside the log"),
        (["--between", "nope", "spike"], "no mark 'nope'"),
        (["--peak", "--leaks"], "choose one log report"),
        (["--start-index", "1"], "goes with --mark-leaks"),
        (["--peak", "--base", "{heap}"], "does not apply to log reports"),
        (["--timeline", "{heap}.svg", "-o", "{heap}.txt"], "takes its own path"),
        (["--idle-threshold", "5"], "go with --inefficient"),
        (["--inefficient", "--mem-size", "lots"], "bad size 'lots'"),
        (["--inefficient", "--inefficient-type", "soon"], "'soon' is not one of"),
        (["--inefficient", "--collapsed"], "--inefficient reports are text"),
        (["--inefficient", "--leaks"], "choose one log report"),
    ],
)
def test_bad_log_options_are_one_line_errors(curve, capsys, args, expect):
    exe, heap, _ = curve
    with pytest.raises(SystemExit) as exit_:
        main(["-p", str(exe), "-f", str(heap), *(a.format(heap=heap) for a in args)])
    out, err = capsys.readouterr()
    assert (exit_.value.code, out) == (2, "")
    assert err.startswith("mem_parser: ") and err.count("\n") == 1 and expect in err, err


def test_frees_pair_with_their_allocations_across_threads(build_fixture, tmp_path):
    """400 short-lived threads, half their blocks freed by other threads, every event
    logged (-c 1): threads write their events in runs, so each free must be paired with
    its allocation by time, and what is left unpaired is exactly what stayed live."""
    exe = build_fixture("thread_storm")
    proc, (heap,) = profile_run([exe, 8], tmp_path / "s_", 1, "--mode", "log")
    assert proc.returncode == 0, proc.stderr
    cap = open_window_log(heap)
    a = cap.allocs
    assert (a.end >= a.start).all()
    # what the sampler's live table held at the end: storm_keep's blocks and arrays, and
    # libc's few of its own (stdout's buffer)
    live_at_end = total(heap, exe)
    assert 400 * (100 * 200 + 100 * 8) <= live_at_end < 400 * (100 * 200 + 100 * 8) + 16384
    assert int(a.size[a.end == NEVER].sum()) == live_at_end
    times, values = replay(cap)
    assert values[-1] == live_at_end and (values >= 0).all()


def test_a_leak_report_shows_its_amounts_in_one_unit():
    leaks = [
        Leak("host", ["big", "main"], 12.5 * 1024 * 1024, 100, 100, 1.0, 2.0),
        Leak("host", ["small", "main"], 4096, 1, 1, 1.5, 1.5),
        Leak("host", ["none", "main"], 0, 0, 0, 1.5, 1.5),
    ]
    text = format_leaks(leaks, "the window", "host")
    amounts = re.findall(r"^(?:Leaks .*: |#\d )(\S+ \S+) in", text, re.M)
    assert amounts == ["12.5 MB", "12.5 MB", "0.004 MB", "0.0 MB"]
