"""Every path a user names, or a profile names, is opened in one home: core/user_paths
(the walk that follows no other user's link), through core/input_files (reading) and
parser/atomic (writing). A walk of the package's code for the calls that open or stat a
path by name finds them there, and elsewhere only on the paths listed here, each with why
it is not such a path."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("bindings", "parser", "cmd")
HOMES = {"bindings/core/user_paths.py", "bindings/core/input_files.py", "parser/common/atomic.py"}
# Calls that open or stat a path by its name.
BY_NAME = {"open", "os.open", "os.stat", "os.lstat", "io.open", "builtins.open"}
PATH_METHODS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "stat", "lstat"}
# (file, the call as written): why its path is no user's.
ALLOWED = {
    # procfs: /proc/<pid>, or the folder of one of its threads (_process_dir, task_dir)
    ("bindings/control/procfs.py", "open(f'{task_dir}/stat', 'rb')"): "the kernel's",
    ("bindings/control/procfs.py", "os.stat('/proc/self/ns/pid')"): "the kernel's",
    ("bindings/control/procfs.py", "os.stat(f'/proc/{pid}')"): "the kernel's",
    ("bindings/control/procfs.py", "os.stat(f'{folder}/ns/pid')"): "the kernel's",
    ("bindings/control/procfs.py", "open(f'{_process_dir(pid)}/status')"): "the kernel's",
    ("bindings/control/procfs.py", "open(f'{_process_dir(pid)}/cmdline', 'rb')"): "the kernel's",
    ("bindings/control/procfs.py", "open(f'{_process_dir(pid)}/statm', 'rb')"): "the kernel's",
    ("bindings/control/procfs.py", "open('/proc/self/status')"): "the kernel's",
    ("bindings/control/procfs.py", "open('/proc/sys/kernel/yama/ptrace_scope')"): "the kernel's",
    ("bindings/control/procfs.py", "open(f'{_process_dir(pid)}/maps')"): "the kernel's",
    # may_write_in: whether a process may make files in a folder, by its bits: no content
    ("bindings/control/procfs.py", "os.stat(path)"): "read for its mode alone",
    (
        "bindings/control/attach/ptrace.py",
        "open(f'/proc/{tid}/mem', 'rb', buffering=0)",
    ): "the kernel's",
    (
        "bindings/control/attach/ptrace.py",
        "open(f'/proc/{tid}/mem', 'r+b', buffering=0)",
    ): "the kernel's",
    # the control blocks in /dev/shm: O_NOFOLLOW, the owner checked on the descriptor
    (
        "bindings/control/control_block.py",
        "os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)",
    ): "a block",  # noqa: E501
    ("bindings/control/control_block.py", "os.lstat(path)"): "a block, not followed",
    (
        "bindings/control/control_block.py",
        "os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)",
    ): "a block",  # noqa: E501
    ("bindings/control/controller.py", "os.lstat(path)"): "a block, not followed",
    ("bindings/live_view.py", "entry.stat(follow_symlinks=False)"): "a view's, not followed",
    # the credentials file: O_NOFOLLOW, owner and mode checked on the descriptor
    (
        "bindings/push/settings.py",
        "os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)",
    ): "credentials",  # noqa: E501
    # a file found through the run's folder descriptor, by its name in it
    (
        "bindings/control/launch.py",
        "os.stat(name, dir_fd=folder_fd, follow_symlinks=False)",
    ): "by fd",
    # the symbol cache's key: the owner of an object ElfImage has opened and checked
    ("parser/elf/symcache.py", "os.stat(source)"): "its owner alone",
    # the order objects are looked up in: a size, of objects opened and checked
    ("parser/elf/object_lookup.py", "os.stat(path)"): "its size alone",
    # whether an object ElfImage opened and checked is still the file at its path
    ("parser/symbols/resolver.py", "os.stat(path)"): "its identity alone",
    ("cmd/cli_input.py", "os.open(os.devnull, os.O_WRONLY)"): "/dev/null",
    # the events database as SQLite built it, in a folder mkdtemp made, 0700
    ("parser/log/export.py", "open(path, 'rb')"): "its own temporary file",
}


def opening_calls() -> set[tuple[str, str]]:
    found = set()
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            name = str(path.relative_to(ROOT))
            if name in HOMES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                func = ast.unparse(node.func)
                path_method = (
                    isinstance(node.func, ast.Attribute)
                    and node.func.attr in PATH_METHODS
                    and _on_a_path(node.func)
                )
                if func in BY_NAME or path_method:
                    found.add((name, ast.unparse(node)))
    return found


def _on_a_path(func: ast.Attribute) -> bool:
    """A method called on something that may be a Path (not os.fdopen's file, a class's
    own open, a module's)."""
    owner = ast.unparse(func.value)
    return owner not in ("ControlBlock", "os", "self", "tarfile", "gzip") and not owner.startswith(
        ("self.", "ControlBlock")
    )


def test_user_named_paths_are_opened_in_one_home():
    assert opening_calls() - ALLOWED.keys() == set()


def test_the_list_holds_no_call_that_is_gone():
    assert ALLOWED.keys() - opening_calls() == set()


def test_the_walk_sees_a_planted_open(tmp_path, monkeypatch):
    """The walk is not blind: an open by name in another module is found."""
    planted = ROOT / "parser" / "planted_for_the_walk.py"
    monkeypatch.setattr(Path, "rglob", _with(planted, Path.rglob))
    original = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:  # Path.read_text's
        if self == planted:
            return "def f(p):\n    return open(p).read()\n"
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert ("parser/planted_for_the_walk.py", "open(p)") in opening_calls()


def _with(
    extra: Path, rglob: Callable[[Path, str], Iterator[Path]]
) -> Callable[[Path, str], list[Path]]:
    def patched(self: Path, pattern: str) -> list[Path]:
        found = list(rglob(self, pattern))
        return found + [extra] if self == extra.parent else found

    return patched
