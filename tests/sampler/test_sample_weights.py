"""The weight of one sample, which the sampler (sampler/tables/estimate.h, for the
estimates it writes) and the parser (parser/common/sampling.py, for the counts it
unsamples) both compute: the same number from both, to 1e-12, from a byte to a
terabyte and at every rate from 1 (each sample stands for itself) up."""

from __future__ import annotations

import subprocess

import numpy as np
from support.paths import ROOT

from mem_profiler.parser.common.sampling import sample_weights

WEIGHTS_OF = r"""
#include <stdio.h>

#include "tables/estimate.h"

int main(void)
{
    unsigned long long rate, size;
    while (scanf("%llu %llu", &rate, &size) == 2)
        printf("%.17g\n", memprof_weight_at(rate, size));
    return 0;
}
"""
RATES = (1, 2, 3, 1024, 4099, 65536, 524288, 1 << 30)
SIZES = (0, 1, 7, 16, 511, 512, 1000, 1023, 1024, 4096, 65537, 1 << 20, 1 << 30, 1 << 40)


def test_the_sampler_and_the_parser_weigh_a_sample_alike(tmp_path):
    source, exe = tmp_path / "weights.c", tmp_path / "weights"
    source.write_text(WEIGHTS_OF)
    subprocess.run(
        ["gcc", "-std=c11", "-O2", "-D_GNU_SOURCE", f"-I{ROOT / 'sampler'}", "-o", exe, source,
         "-lm"],
        check=True, timeout=120,
    )  # fmt: skip
    pairs = [(rate, size) for rate in RATES for size in SIZES]
    done = subprocess.run(
        [exe], input="".join(f"{rate} {size}\n" for rate, size in pairs),
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    sampler = np.array([float(line) for line in done.stdout.split()])
    parser = np.concatenate([sample_weights(np.array(SIZES, np.float64), rate) for rate in RATES])
    assert len(sampler) == len(pairs)
    far = np.flatnonzero(np.abs(sampler - parser) > 1e-12 * parser)
    assert far.tolist() == [], [(pairs[i], sampler[i], parser[i]) for i in far.tolist()]
