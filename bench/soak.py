"""`make soak`: the sampler under sustained load (tests/support/soak.py) for ten minutes:
8 threads of bench/churn.c at -c 1024, a dump from outside every 2 s. Prints the
target's resident set against the workload's without the sampler, its descriptors and
threads over the run, the dumps, and the exit profile's bytes allocated against the
program's own count."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.soak import build_churn, plain_rss_kib, soak  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between dumps")
    ap.add_argument("--rate", type=int, default=1024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="memprof-soak-") as folder:
        out = Path(folder)
        exe = build_churn(out)
        plain = plain_rss_kib(exe, args.threads, min(args.seconds, 30), args.interval)
        r = soak(exe, out, args.seconds, args.threads, args.interval, args.rate)
    settled = r.samples[1:] or r.samples
    rss = [s.rss_kib for s in settled]
    print(
        f"soak: {args.threads} threads of churn for {args.seconds} s at -c {args.rate}, "
        f"a dump every {args.interval:g} s"
    )
    print(f"  exit status               {r.exit_code}")
    print(f"  dumps                     {r.dumps} written, {len(r.failed_dumps)} failed")
    for sentence in r.failed_dumps[:5]:
        print(f"    {sentence}")
    print(f"  allocated (its own count) {r.allocated / 2**30:,.1f} GiB")
    print(f"  estimated / allocated     {r.estimated / r.allocated:.5f}")
    print(f"  RSS without the sampler   {plain / 1024:.1f} MiB at most")
    print(
        f"  RSS after the first dump  {rss[0] / 1024:.1f} MiB, last {rss[-1] / 1024:.1f} MiB,"
        f" highest {max(rss) / 1024:.1f} MiB"
    )
    print(
        f"  descriptors               {min(s.fds for s in settled)}-{max(s.fds for s in settled)}"
    )
    print(
        f"  threads                   {min(s.threads for s in settled)}-"
        f"{max(s.threads for s in settled)}"
    )
    sys.exit(0 if r.exit_code == 0 and not r.failed_dumps else 1)


if __name__ == "__main__":
    main()
