"""Where -o names something that is not a regular file (a device such as /dev/null, a
FIFO), mem_parser writes into it: the rename that puts a report in place atomically
would replace the device or the pipe with a file."""

from __future__ import annotations

import os
import stat
import threading

from support.profiling import run_parser
from support.synthetic_heaps import OURS


def test_a_device_stays_a_device(tmp_path):
    heap = tmp_path / "p.heap"
    heap.write_text(OURS)
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the null device, as root
    run_parser("-p", "/bin/true", "--allow-mismatch", "-f", heap, "-t", "-o", null)
    assert stat.S_ISCHR(null.stat().st_mode)
    assert null.stat().st_rdev == os.makedev(1, 3)
    assert {p.name for p in tmp_path.iterdir()} == {"p.heap", "null"}  # no temporary left


def test_a_fifo_gets_the_report(tmp_path):
    heap = tmp_path / "p.heap"
    heap.write_text(OURS)
    fifo = tmp_path / "report"
    os.mkfifo(fifo)
    received: list[bytes] = []
    # a daemon: where the pipe was replaced, its open never returns
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    run_parser("-p", "/bin/true", "--allow-mismatch", "-f", heap, "-t", "-o", fifo)
    reader.join(timeout=10)  # the writer has closed the pipe: the reader ends at once
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].startswith(b"Total:")
    expected = run_parser("-p", "/bin/true", "--allow-mismatch", "-f", heap, "-t").stdout.encode()
    assert received[0] == expected
