"""What one sample costs in instructions, by stage: callgrind (valgrind) counts the
instructions of Debian's python3 running objects.py (the python group's program) under
the sampler, in the library valgrind reads (make build/callgrind/libmemprof.so: the
64 KiB window page of the shipped build makes valgrind read none of its symbols).  The
counts do not move with the machine's load as times do, so two builds compare in one
run of each: --lib another build of it (an earlier revision's `make
build/callgrind/libmemprof.so`).

usage: sample_instructions.py [--records N] [--rate N ...] [--lib PATH]"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench_setup import ROOT

LIB = ROOT / "build" / "callgrind" / "libmemprof.so"
OBJECTS_SCRIPT = ROOT / "tests" / "fixtures" / "real_programs" / "objects.py"
# The stages: the functions whose inclusive counts make them, and where they are called.
STAGES = (
    ("native walk", "memprof_unwind"),
    ("Python walk", "memprof_python_chain"),
    ("interning", "memprof_stack_intern"),
    ("sample in all", "record_sample"),
    ("frees of samples", "memprof_take_sample"),
    ("the dump at exit", "memprof_write_dump"),
)


def annotate(out: Path, *options: str) -> str:
    return subprocess.run(
        ["callgrind_annotate", *options, str(out)], capture_output=True, text=True, check=True
    ).stdout


def inclusive(text: str, function: str) -> int:
    """The function's inclusive count, its clones (.part, .isra) with it."""
    pattern = rf"^\s*([\d,]+) \([^)]*\)\s+\S*:{re.escape(function)}(?:\.\w+\.\d+)? \["
    return sum(int(m.group(1).replace(",", "")) for m in re.finditer(pattern, text, re.M))


def own(text: str, lib: Path) -> int:
    """The instructions of the library's own functions."""
    pattern = rf"^\s*([\d,]+) \([^)]*\)\s+\S+ \[{re.escape(str(lib))}\]"
    return sum(int(m.group(1).replace(",", "")) for m in re.finditer(pattern, text, re.M))


def samples(tree: str) -> int:
    calls = re.search(r"=> \S*:record_sample \(([\d,]+)x\)", tree)
    return int(calls.group(1).replace(",", "")) if calls else 0


def measure(lib: Path, rate: int, records: int, folder: Path) -> dict[str, float]:
    out = folder / f"callgrind.{rate}.out"
    env = dict(
        os.environ,
        LD_PRELOAD=str(lib),
        MEMPROF_CAPTURE="1",
        MEMPROF_RATE=str(rate),
        MEMPROF_PREFIX=f"{folder}/objects_",
    )
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "/usr/bin/python3",
            str(OBJECTS_SCRIPT),
            str(records),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    text = annotate(out, "--inclusive=yes", "--threshold=100")
    n = samples(annotate(out, "--tree=caller"))
    figures = {name: inclusive(text, function) / max(n, 1) for name, function in STAGES}
    figures["samples"] = n
    figures["the sampler's own, a sample"] = own(annotate(out, "--threshold=100"), lib) / max(n, 1)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rate", type=int, nargs="+", default=[1024, 1])
    ap.add_argument("--lib", type=Path, help="another build to compare, beside this one's")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not LIB.is_file():
        print("\nInstructions a sample: skipped (valgrind, or make build/callgrind/libmemprof.so)")
        return
    libs = [("this build", LIB)] + ([("--lib", args.lib.resolve())] if args.lib else [])
    print(
        f"\nInstructions a sample (callgrind): Debian's python3, objects.py {args.records:,}, "
        "pymalloc; each stage with what it calls"
    )
    for rate in args.rate:
        for name, lib in libs:
            with tempfile.TemporaryDirectory() as folder:
                figures = measure(lib, rate, args.records, Path(folder))
            print(f"  -c {rate:<5} {name}: {figures.pop('samples'):,.0f} samples")
            for stage, value in figures.items():
                print(f"    {stage:<28} {value:>9,.0f}")


if __name__ == "__main__":
    main()
