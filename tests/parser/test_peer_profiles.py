"""Heap profiles written by the peers' own profilers, read by mem_parser and checked
against the peers' own readers on the same files and against the fixture's known bytes:
Debian's jemalloc (its shared library and a static link) against jeprof, Debian's
gperftools against google-pprof (pprof's Perl version) and `go tool pprof`, a Go
program's legacy and proto heap profiles and Grafana Pyroscope's Node.js SDK's heap
profile against `go tool pprof`."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from support.jeprof import jeprof_text, text_table
from support.paths import FIXTURES, MEM_PARSER, MEM_PROFILER, ROOT
from support.reports import go_pprof, pprof_amount

LIBJEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
LIBJEMALLOC_PIC = "/usr/lib/x86_64-linux-gnu/libjemalloc_pic.a"  # Debian's libjemalloc-dev
MiB = 1 << 20
SITES = (10_000, 40_000, 10)  # tests/fixtures/sites.c: site_pages, site_small, site_transient
# what each site keeps: its blocks and the array of their pointers
PAGES_MB, SMALL_MB = (n * (size + 8) / MiB for n, size in ((SITES[0], 4096), (SITES[1], 256)))


# of gperftools' heap sample and growth stacks, the same counts in the formats of Google's
# heapz and growthz, which no installable tool writes
HAND_WRITTEN = {
    "heapz": ("sample", "@ heap_v2/", "@ heapz_v2/"),
    "growthz": ("growth", "@ growth", "@ growthz"),
}


def jemalloc_run(exe: Path, prefix: Path, conf: str = "", preload: bool = False) -> Path:
    """Run exe on SITES with jemalloc's profiling on (1 KiB mean sample interval); the
    file it writes at exit."""
    env = dict(os.environ, MALLOC_CONF=f"prof:true,lg_prof_sample:10,prof_final:true{conf}")
    env["MALLOC_CONF"] += f",prof_prefix:{prefix}"
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = LIBJEMALLOC
    subprocess.run([exe, *map(str, SITES)], env=env, check=True, capture_output=True)
    (heap,) = prefix.parent.glob(f"{prefix.name}.*.heap")
    return heap


@pytest.fixture(scope="module", params=["shared", "static"])
def jemalloc_profile(request, build_fixture, tmp_path_factory) -> tuple[str, Path, Path]:
    """(how jemalloc was linked, the program, the file jemalloc wrote)."""
    if request.param == "shared":
        exe = build_fixture("sites")
    else:
        exe = build_fixture(
            "sites", output="sites_jemalloc", libs=(LIBJEMALLOC_PIC, "-lstdc++", "-lm")
        )
    prefix = tmp_path_factory.mktemp("jemalloc") / "je"
    return request.param, exe, jemalloc_run(exe, prefix, preload=request.param == "shared")


def test_jemalloc_profile_names_the_allocating_functions(jemalloc_profile):
    link, exe, heap = jemalloc_profile
    total, rows = text_table([MEM_PARSER, "-p", exe, "-f", heap, "-t"])
    jeprof_total, jeprof_rows = jeprof_text(exe, heap)
    assert total == pytest.approx(jeprof_total, rel=0.01)
    assert [name for name, _, _ in rows[:2]] == ["site_pages", "site_small"], rows[:4]
    flat = {name: value for name, value, _ in rows}
    assert flat["site_pages"] == pytest.approx(PAGES_MB, rel=0.02)
    assert flat["site_small"] == pytest.approx(SMALL_MB, rel=0.05)
    if link == "shared":  # jeprof leaves a static jemalloc's prof_backtrace_impl on top
        theirs = {name: value for name, value, _ in jeprof_rows}
        assert theirs["site_pages"] == pytest.approx(flat["site_pages"], abs=0.11)
        assert theirs["site_small"] == pytest.approx(flat["site_small"], abs=0.11)


def test_a_jemalloc_profile_names_its_program_by_its_memory_map(jemalloc_profile):
    """jemalloc writes no `# exe:` line and no build-id: without -p, mem_parser takes the
    program from the file's memory map, as jeprof does, and says once (with -p too) that
    it could not check the build."""
    _, exe, heap = jemalloc_profile
    found = subprocess.run([MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True)
    given = subprocess.run(
        [MEM_PARSER, "-p", exe, "-f", heap, "-t"], capture_output=True, text=True
    )
    assert (found.returncode, given.returncode) == (0, 0), found.stderr + given.stderr
    program = os.path.realpath(exe)
    assert found.stderr.startswith(f"mem_parser: reading {program}, the program that ran\n")
    for proc, named in ((found, program), (given, exe)):
        unchecked = (
            f"mem_parser: warning: the profile records no build-id: that {named} is the"
            " build that ran could not be checked.\n"
        )
        assert proc.stderr.count(unchecked) == 1, proc.stderr
    assert found.stdout == given.stdout


def test_jemalloc_profile_with_thread_names(build_fixture, tmp_path):
    exe = build_fixture("sites")
    heap = jemalloc_run(exe, tmp_path / "je", ",prof_sys_thread_name:true", preload=True)
    assert "] sites\n" in heap.read_text()  # the main thread's line ends with its name
    total, rows = text_table([MEM_PARSER, "-p", exe, "-f", heap, "-t"])
    assert total == pytest.approx(jeprof_text(exe, heap)[0], rel=0.01)
    assert [name for name, _, _ in rows[:2]] == ["site_pages", "site_small"]


@pytest.fixture(scope="module")
def gperftools_profiles(build_fixture, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The gperftools fixture and its profiles: its heap profiler's at exit (`heapprofile`),
    its heap sample (`heap_v2`), its growth stacks (`growth`), and those two as heapz
    and growthz."""
    exe = build_fixture("gperftools_sites", libs=("-ltcmalloc",))
    work = tmp_path_factory.mktemp("gperftools")
    files = {"sample": work / "sample.heap", "growth": work / "growth.heap"}
    env = dict(os.environ, HEAPPROFILE=str(work / "hp"), TCMALLOC_SAMPLE_PARAMETER="8192")
    env.pop("LD_PRELOAD", None)
    argv = [exe, *map(str, SITES[:2]), files["sample"], files["growth"]]
    subprocess.run(argv, env=env, check=True, capture_output=True)
    (files["heapprofile"],) = work.glob("hp.*.heap")
    for kind, (source, old, new) in HAND_WRITTEN.items():
        text = files[source].read_text()
        assert old in text.partition("\n")[0]
        files[kind] = work / f"{kind}.heap"
        files[kind].write_text(text.replace(old, new, 1))
    return exe, files


@pytest.mark.parametrize("kind", ["heapprofile", "sample", "growth", "heapz", "growthz"])
def test_gperftools_profiles_read_as_pprof_reads_them(gperftools_profiles, tmp_path, kind):
    exe, files = gperftools_profiles
    total, rows = text_table([MEM_PARSER, "-p", exe, "-f", files[kind], "-t"])
    go_total = go_pprof_total(tmp_path, exe, files[kind])
    assert total == pytest.approx(go_total, rel=0.01, abs=0.05)
    if kind not in HAND_WRITTEN:  # google-pprof does not know heapz and growthz
        assert total == text_table(["google-pprof", "--text", exe, files[kind]])[0]
    assert [name for name, _, _ in rows[:2]] == ["site_pages", "site_small"], rows[:4]
    if kind == "heapprofile":  # every allocation recorded
        flat = {name: value for name, value, _ in rows}
        assert flat["site_pages"] == round(PAGES_MB, 1)
        assert flat["site_small"] == round(SMALL_MB, 1)


def test_go_legacy_heap_profile_reads_as_go_pprof_reads_it(go_build, tmp_path):
    exe = go_build("heap_sites", cgo=False)
    heap = tmp_path / "go.heap"
    subprocess.run([exe, *map(str, SITES[:2]), heap], check=True, timeout=120)
    assert heap.read_text().partition("\n")[0].endswith("@ heap/2048")
    assert "\n# runtime.MemStats\n" in heap.read_text()
    total, rows = text_table([MEM_PARSER, "-p", exe, "-f", heap, "-t"])
    go_total = go_pprof_total(tmp_path, exe, heap)
    assert total == pytest.approx(go_total, rel=0.01, abs=0.05)
    assert [name for name, _, _ in rows[:2]] == ["main.sitePages", "main.siteSmall"], rows[:4]
    # the program's mappings, which the file does not record, go into --pprof's profile
    written = tmp_path / "go.pb.gz"
    subprocess.run([MEM_PARSER, "-p", exe, "-f", heap, "--pprof", written], check=True)
    assert go_pprof_total(tmp_path, written) == pytest.approx(go_total, abs=0.01)
    assert "main.sitePages" in go_pprof(tmp_path, "-top", written).stdout


def short_memory_map(text: str) -> str:
    """A profile with its `MAPPED_LIBRARIES:` section written as heapz writes its memory
    map: `--- Memory map: ---`, a `source=` line and `START-END: $source/NAME (@OFFSET)`
    for each executable mapping of the program, the others' paths whole; the rest left
    out."""
    body, _, maps = text.partition("MAPPED_LIBRARIES:")
    exes = [line.split() for line in maps.splitlines() if len(line.split()) == 6]
    exes = [f for f in exes if "x" in f[1] and f[5].startswith("/")]
    folder = os.path.dirname(exes[0][5])
    lines = [f"\tsource={folder}"] + [
        f"  {f[0]}: "
        + (f"$source/{os.path.basename(f[5])}" if f[5] == exes[0][5] else f[5])
        + f" (@{f[2]})"
        for f in exes
    ]
    return body + "--- Memory map: ---\n" + "\n".join(lines) + "\n"


def test_heapz_with_its_short_memory_map_reads_as_pprof_reads_it(gperftools_profiles, tmp_path):
    exe, files = gperftools_profiles
    heapz = tmp_path / "short.heapz"
    heapz.write_text(short_memory_map(files["heapz"].read_text()))
    total, rows = text_table([MEM_PARSER, "-f", heapz, "-t"])  # the program from the map
    assert total == pytest.approx(go_pprof_total(tmp_path, exe, heapz), rel=0.01, abs=0.05)
    assert [name for name, _, _ in rows[:2]] == ["site_pages", "site_small"], rows[:4]


def test_go_legacy_heap_profile_without_its_program_reads_as_addresses(go_build, tmp_path):
    exe = go_build("heap_sites", cgo=False)
    heap = tmp_path / "go.heap"
    subprocess.run([exe, *map(str, SITES[:2]), heap], check=True, timeout=120)
    done = subprocess.run(
        [MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Its frames are shown as addresses, as pprof shows them." in done.stderr
    total = float(done.stdout.split()[1])
    go_total = go_pprof_total(tmp_path, "-symbolize=none", heap)
    assert total == pytest.approx(go_total, rel=0.01, abs=0.05)
    table = json.loads(
        subprocess.run(
            [MEM_PARSER, "-f", heap, "--json"], capture_output=True, check=True, timeout=120
        ).stdout
    )
    assert all(re.fullmatch(r"0x[0-9a-f]+", row["name"]) for row in table["rows"]), table
    assert sum(row["flat"] for row in table["rows"]) == pytest.approx(table["total"])


@pytest.mark.parametrize("index", ["inuse_space", "alloc_space"])
def test_go_proto_heap_profile_reads_as_go_pprof_reads_it(go_build, tmp_path, index):
    """Go's own heap profile (pprof's profile.proto, gzip-compressed), read without the
    program, which the file's function names make unneeded: the totals and the top rows
    of `go tool pprof`, and `--pprof` of it read back by go tool pprof the same."""
    exe = go_build("heap_sites", cgo=False)
    pb = tmp_path / "go.pb.gz"
    subprocess.run([exe, *map(str, SITES[:2]), pb], check=True, timeout=120)
    assert pb.read_bytes()[:2] == b"\x1f\x8b"
    total, rows = text_table([MEM_PARSER, "-f", pb, "-t", f"--{index}"])
    theirs = go_pprof_total(tmp_path, f"-sample_index={index}", pb)
    assert total == pytest.approx(theirs, rel=0.01, abs=0.05)
    assert [name for name, _, _ in rows[:2]] == ["main.sitePages", "main.siteSmall"], rows[:4]
    written = tmp_path / "again.pb.gz"
    subprocess.run([MEM_PARSER, "-f", pb, "--pprof", written], check=True)
    again = go_pprof_total(tmp_path, f"-sample_index={index}", written)
    assert again == pytest.approx(theirs, abs=0.01)
    base, _ = text_table([MEM_PARSER, "-f", pb, "--base", pb, "-t", f"--{index}"])
    assert base == 0
    # the gate's growth budget needs the peak that only a capture of ours records
    gate = subprocess.run(
        [MEM_PROFILER, "gate", "--max-growth-vs", pb, "--", "true"], capture_output=True, text=True
    )
    assert gate.returncode == 2 and "Traceback" not in gate.stderr, gate.stderr
    assert f"{pb} records no peak (it is not a mem_profiler capture)" in gate.stderr


PYROSCOPE_NODE = ROOT / "build" / "pyroscope-node" / "node_modules"


def pyroscope_upload(script: Path, tmp_path: Path) -> bytes:
    """The heap profile Pyroscope's Node.js SDK uploads when `script` stops it: the body
    of its POST to /ingest?format=pprof on a server of our own."""
    if shutil.which("node") is None or not (PYROSCOPE_NODE / "@pyroscope" / "nodejs").is_dir():
        pytest.fail("node or Pyroscope's SDK is not installed: run the tests with `make test`")
    uploads: list[tuple[str, bytes]] = []
    ingested = threading.Event()

    class Ingest(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            uploads.append((self.path, body))
            ingested.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        env = dict(os.environ, NODE_PATH=str(PYROSCOPE_NODE))
        with subprocess.Popen(
            ["node", script, url], env=env, cwd=tmp_path, stdin=subprocess.PIPE, text=True
        ) as node:
            while not uploads and node.poll() is None:  # its first round's upload
                ingested.wait(0.05)
            node.communicate("", timeout=120)  # end of input: it stops
        assert node.returncode == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    profiles = [body for path, body in uploads if path.startswith("/ingest?format=pprof")]
    assert profiles, uploads
    return profiles[-1]


def test_pyroscope_heap_profile_reads_as_go_pprof_reads_it(tmp_path):
    """Grafana Pyroscope's Node.js SDK's heap profile (V8's sampling heap profiler, as
    pprof): the totals and the top rows of `go tool pprof`, its function names (`file:
    function:line`, as Node gives them) kept whole, and `--pprof` of it read back the
    same."""
    pb = tmp_path / "pyroscope.pb.gz"
    pb.write_bytes(pyroscope_upload(FIXTURES / "pyroscope_heap.js", tmp_path))
    assert pb.read_bytes()[:2] == b"\x1f\x8b"
    total, rows = text_table([MEM_PARSER, "-f", pb, "-t"])
    go_total = go_pprof_total(tmp_path, pb)
    assert total == pytest.approx(go_total, rel=0.01, abs=0.05)
    top = go_pprof(tmp_path, "-top", pb).stdout
    names = [name for name, _, _ in rows[:2]]
    assert [n.split(":")[1:2] for n in names] == [["keepArrays"], ["keepObjects"]], rows[:4]
    for name in names:  # as go pprof names them
        assert f" {name}\n" in top, (name, top)
    assert rows[0][1] > 14  # 2,000 arrays of 8 kB, sampled
    written = tmp_path / "again.pb.gz"
    subprocess.run([MEM_PARSER, "-f", pb, "--pprof", written], check=True)
    assert go_pprof_total(tmp_path, written) == pytest.approx(go_total, abs=0.01)


def go_pprof_total(tmp_path: Path, *args: str | Path) -> float:
    """The total (MB) of `go tool pprof -top ARGS`, printed to 0.01 MB. A written file's
    is compared with the original's: the text table's total is rounded to 0.1 MB, which a
    sampled total can fall half-way through."""
    out = go_pprof(tmp_path, "-top", *args).stdout
    m = re.search(r" of (\S+) total", out)
    assert m is not None, out
    return pprof_amount(m[1]) / MiB
