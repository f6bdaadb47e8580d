"""Report files are written under a temporary name and renamed into place (parser/
atomic.py), every writer of reports through it: the temporary file's mode is set
through its descriptor, so one swapped for a link while it is written (the folder
another user's, root writing into it) never has root change the link's target."""

from __future__ import annotations

import ctypes
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT

from mem_profiler.core.errors import UserError
from mem_profiler.parser.common.atomic import atomic_open, write_file

RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): the two names swap their files at once."""
    libc = ctypes.CDLL(None, use_errno=True)
    args = (AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if libc.renameat2(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def test_a_temporary_file_swapped_for_a_link_never_redirects_the_chmod(tmp_path):
    victim = tmp_path / "secret"
    victim.write_text("root's\n")
    victim.chmod(0o600)
    folder = tmp_path / "theirs"
    folder.mkdir()
    bait = folder / "bait"
    bait.symlink_to(victim)
    report = folder / "report.txt"
    with atomic_open(report) as f:
        f.write("the report\n")
        (tmp,) = folder.glob(".report.txt.*.tmp")
        exchange(tmp, bait)  # the link now has the temporary name
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert victim.read_text() == "root's\n"
    assert bait.read_text() == "the report\n"  # the file written, moved aside with its mode
    assert stat.S_IMODE(bait.stat().st_mode) == 0o666 & ~current_umask()


def test_a_report_gets_the_mode_open_would_give(tmp_path):
    write_file(tmp_path / "r.txt", "text\n")
    assert stat.S_IMODE((tmp_path / "r.txt").stat().st_mode) == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_nothing_is_left_when_the_writer_fails(tmp_path, mode):
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "r", mode):
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = """
import sys, time
from mem_profiler.parser.common.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write("half")
    f.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_killed_writers_temporary_is_removed_by_the_next_writer(tmp_path):
    """Never a live writer's (this process's, still open), a link or another user's."""
    report = tmp_path / "report.txt"
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(report)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert killed.stdout is not None
        assert killed.stdout.readline() == "writing\n"
    finally:
        killed.kill()
        killed.wait()
    (dead,) = tmp_path.glob(".report.txt.*.tmp")
    link = tmp_path / ".report.txt.link0000.locked.tmp"
    theirs = tmp_path / ".report.txt.theirs00.locked.tmp"
    older = tmp_path / ".report.txt.older000.tmp"  # an older writer's, which had no lock
    link.symlink_to(dead)
    for path in (theirs, older):
        path.write_text("kept\n")
    os.chown(theirs, 65534, 65534)
    with atomic_open(report) as outer:
        outer.write("outer\n")
        (live,) = set(tmp_path.glob(".report.txt.*.tmp")) - {dead, link, theirs, older}
        write_file(report, "inner\n")
        assert sorted(tmp_path.iterdir()) == sorted([live, link, theirs, older, report])
    assert report.read_text() == "outer\n"
    assert sorted(tmp_path.iterdir()) == sorted([link, theirs, older, report])


def test_no_module_changes_a_mode_by_path():
    """Every report goes through atomic_open; nothing else may chmod by name."""
    sources = [p for folder in ("bindings", "parser", "cmd") for p in (ROOT / folder).rglob("*.py")]
    by_path = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"(?<![f\w])chmod\(|\.chmod\(", line)
    ]
    assert by_path == []


NOBODY = 65534


@pytest.fixture
def theirs(tmp_path_factory):
    """A folder of nobody's that root writes into, where nobody may plant anything (in a
    folder everyone may enter: nobody's links must be walkable to matter)."""
    top = tmp_path_factory.mktemp("hostile")
    top.chmod(0o755)
    folder = top / "nobody"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    return folder


def test_another_users_link_to_a_fifo_is_replaced_not_written_through(theirs, tmp_path):
    """nobody's report.txt -> a FIFO (the issue's /dev/loop0): root's report replaces the
    link; nothing is written into the FIFO and root does not wait on it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    report = theirs / "report.txt"
    report.symlink_to(fifo)
    os.chown(report, NOBODY, NOBODY, follow_symlinks=False)
    write_file(report, "the report\n")  # would block opening the FIFO for writing
    assert not report.is_symlink() and report.read_text() == "the report\n"
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_another_users_special_file_is_refused(theirs):
    fifo = theirs / "report.txt"
    os.mkfifo(fifo)
    os.chown(fifo, NOBODY, NOBODY)
    with pytest.raises(UserError, match="a special file of another user .nobody., which"):
        write_file(fifo, "the report\n")


def test_another_users_link_on_the_way_is_refused(theirs, tmp_path):
    secret = tmp_path / "root_only"
    secret.mkdir(mode=0o700)
    link = theirs / "sub"
    link.symlink_to(secret)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(UserError, match=r"sub is a link of another user \(nobody\)"):
        write_file(link / "report.txt", "the report\n")
    assert list(secret.iterdir()) == []


def test_what_the_user_names_plainly_is_written_in_place(tmp_path):
    """/dev/null, /dev/stdout (the kernel's link) and a FIFO of one's own."""
    write_file("/dev/null", "gone\n")
    fifo = tmp_path / "mine"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    write_file(fifo, "through the FIFO\n")
    assert reader.communicate(timeout=60)[0] == "through the FIFO\n"
    code = (
        "from mem_profiler.parser.common.atomic import write_file;"
        " write_file('/dev/stdout', 'out\\n')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "out\n"), done.stderr
