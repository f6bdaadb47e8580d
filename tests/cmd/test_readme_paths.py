"""The README's two paths, as written: a user's (Install's lines, then First run's with the
installed commands) on a copy of the files a clone holds, in a virtualenv of its own under
a home of its own; and a contributor's (`make demo`, `make test`), which .ci/run runs as
written on a clean clone. This machine has no `sudo`: the user's path runs as root, the
`apt-get` line checked against the packages installed rather than run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from support.paths import ROOT
from support.sampling_math import assert_estimate, relative_sd

MB = 1 << 20
README = (ROOT / "README.md").read_text()


def commands(section: str) -> list[str]:
    """The lines of the first code block under the README's `## section`."""
    m = re.search(rf"^## {re.escape(section)}\n.*?^```\n(.*?)^```$", README, re.M | re.S)
    assert m is not None, f"README.md has no code block under ## {section}"
    return m[1].splitlines()


def installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return done.stdout == "install ok installed"


def user_env(home: Path) -> dict[str, str]:
    """A new user's shell: no virtualenv active, nothing of ours set, pip's downloads
    kept where this machine keeps them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMPROF_", "PYTHON", "PIP_"))
        and k not in ("LD_PRELOAD", "VIRTUAL_ENV")
    }
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    env["HOME"] = str(home)
    return env


def shell(lines: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["bash", "-euc", "\n".join(lines)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_the_users_path_installs_and_runs_as_written(tmp_path):
    apt, *install = commands("Install")
    words = shlex.split(apt.partition("#")[0])
    assert words[:2] == ["apt-get", "install"], apt  # as root; `sudo apt-get` for a user
    assert [p for p in words[2:] if not installed(p)] == []
    build, run, report = commands("First run")

    checkout = tmp_path / "checkout"  # the tracked files, as a clone of this tree has them
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for tracked in filter(None, files):
        source, target = ROOT / os.fsdecode(tracked), checkout / os.fsdecode(tracked)
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)
    env = user_env(tmp_path / "home")
    (tmp_path / "home").mkdir()

    ran = shell([*install, build, run], checkout, env)
    m = re.search(r"mem_profiler: wrote \S*/leaky_(\d+)\.0001\.heap$", ran.stderr, re.M)
    assert m is not None, ran.stderr
    activate = install[0].split("&&")[-1].strip()  # a new shell activates the virtualenv
    table = shell([activate, report.replace("<pid>", m[1])], checkout, env).stdout

    rows = {
        line.split()[-1]: float(line.split()[3])
        for line in table.splitlines()
        if re.match(r"^\s+[\d.]+\s+[\d.]+%", line)
    }
    # examples/leaky.c 200: 200 blocks of 64 KiB at load_config, 3,200 of 1 KiB at
    # cache_insert, printed in MB to one decimal
    assert next(iter(rows)) == "load_config"
    for name, blocks, size in (("load_config", 200, 65536), ("cache_insert", 3200, 1024)):
        truth = blocks * size
        rel_sd = relative_sd(blocks, size, 1024) + 0.05 * MB / truth
        assert_estimate(rows[name] * MB, truth, rel_sd, 0.15)


def test_the_contributors_path_is_what_ci_runs():
    """Each of the README's commands for a contributor is a line .ci/run runs."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for line in commands("Working on mem_profiler"):
        command = line.partition("#")[0].strip()
        assert command in ci, f"{command!r} (README.md) is not run by .ci/run"
