"""Headless Chromium for the tests that open the HTML and SVG reports in a browser."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest


def chromium(
    *args: str, profile_dir: Path, timeout: float = 90, launcher: Sequence[str | Path] = ()
) -> subprocess.CompletedProcess:
    """Headless Chromium (Debian `chromium`, installed by `make deps`), kept off the network;
    `launcher`: the command that starts it (mem_profiler run ... --)."""
    exe = next((p for p in ("chromium", "chromium-browser") if shutil.which(p)), None)
    if exe is None:
        pytest.fail("chromium is not installed: run the tests with `make test`")
    return subprocess.run(
        [
            *launcher,
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
