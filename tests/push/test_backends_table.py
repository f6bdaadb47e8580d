"""A push backend is a module and an entry in push/backends' BACKENDS: a toy one, built
in a package of its own, is offered by the command line's help, told from a URL's path
or port, and makes the requests of a push, with no other change."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from support.tree_files import TreeStack, tree_file

from mem_profiler.push.backends import BACKENDS

_TOY = '''
"""The toy backend: one JSON request of each heap's labels and sample count."""
import json

from mem_profiler.push.backends.series import carried, labelled
from mem_profiler.push.sender import Upload


def uploads(settings, processes):
    body = [[labels, len(period.tables.samples)] for period, labels in labelled(processes, {})]
    return [Upload(settings.url, {"Content-Type": "application/json"}, json.dumps(body).encode(),
                   carried(processes))]
'''

_LAUNCH = """
import contextlib, io, json, sys
from mem_profiler.push import backends

toy = backends.Backend("toy", "Toy", "/toy/push", 9999, "toy_backend")
backends.BACKENDS = backends.BACKENDS + (toy,)
from mem_profiler.cmd import mem_profiler
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.push.periods import Periods
from mem_profiler.push.settings import push_settings

shown = io.StringIO()
with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
    mem_profiler.main(["run", "--help"])
by_port, by_path = push_settings("http://h:9999"), push_settings("https://h/a/toy/push")
periods = Periods(4242).cut_files([read_heap(sys.argv[1])], 1)
(upload,) = backends.uploads(by_port, [periods])
print(json.dumps({
    "help": shown.getvalue(),
    "told": [[s.protocol, s.url] for s in (by_port, by_path)],
    "upload": [upload.url, upload.what, json.loads(upload.body)],
}))
"""


def test_a_new_backend_is_in_the_help_the_settings_and_the_push(tmp_path):
    (tmp_path / "toy_backend.py").write_text(textwrap.dedent(_TOY))
    header = ["# exe: /bin/true", "# heap: host", "# pid: 4242", "# window_start_ns: 1"]
    stacks = [TreeStack([0x401200 + 16 * i, 0x400F10], (1, 100, 1, 100)) for i in range(3)]
    heap = tmp_path / "p.heap"
    heap.write_bytes(tree_file(1, header, stacks))
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCH, str(heap)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    shown = " ".join(found["help"].split())
    protocols = "|".join(b.protocol for b in BACKENDS)
    assert f"--push-protocol [{protocols}|toy]" in shown
    assert "4318 otlp, 9999 toy]" in shown
    assert "Parca, OpenTelemetry (OTLP) or Toy backend" in shown
    assert found["told"] == [["toy", "http://h:9999/toy/push"], ["toy", "https://h/a/toy/push"]]
    url, what, body = found["upload"]
    assert (url, what) == ("http://h:9999/toy/push", "the profiles of process 4242")
    ((labels, samples),) = body
    assert labels["heap"] == "host" and labels["pid"] == "4242" and labels["exe"] == "/bin/true"
    assert samples == 3  # three stacks of unnamed addresses: three samples
