"""Builds libmemprof.so with make so that `pip install .` ships a working sampler."""
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithSampler(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install finds build/libmemprof.so in the checkout
        subprocess.run(["make", "-C", str(ROOT), "build/libmemprof.so"], check=True)
        target = Path(self.build_lib) / "mem_profiler" / "libmemprof.so"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "build" / "libmemprof.so", target)


setup(cmdclass={"build_py": BuildWithSampler})
