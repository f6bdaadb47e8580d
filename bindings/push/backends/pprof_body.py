"""A heap period as gzipped pprof, the body most backends take, within a backend's
limits on samples and size where it has them."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np

from mem_profiler.parser.common.arrays import runs
from mem_profiler.parser.report.pprof import (
    SAMPLE_TYPES,
    Function,
    Location,
    LocationTable,
    PprofTables,
    Samples,
    pprof_bytes,
    sample_arrays,
    tables_of,
)
from mem_profiler.push.periods import HeapPeriod

LEFT_OUT = "[smaller stacks, summed to fit the backend's limit]"
# A push is made again every period: gzip's fastest level takes a third of the time of
# its default for a tenth more bytes.
GZIP_LEVEL = 1


def pprof_body(
    period: HeapPeriod, max_samples: int | None = None, max_bytes: int | None = None
) -> bytes:
    """The period as gzipped pprof; with `max_samples` and `max_bytes`, its smallest
    stacks summed into one sample until it has no more samples, nor more bytes once
    decompressed."""
    keep = max_samples
    while True:
        if keep is not None and len(period.tables.samples) > keep:
            tables = fitted(period.tables, keep)
        else:
            tables = compact(period.tables)
        body = pprof_bytes(
            period.profile, tables, period_ns=(period.start_ns, period.end_ns), level=GZIP_LEVEL
        )
        if (
            keep is None
            or keep == 1
            or max_bytes is None
            or len(gzip.decompress(body)) <= max_bytes
        ):
            return body
        keep = min(keep, len(period.tables.samples)) // 2


def compact(tables: PprofTables) -> PprofTables:
    """The tables with only the locations, functions and mappings their samples use,
    numbered anew."""
    samples = sample_arrays(tables.samples)
    return tables_of(
        samples.ids,
        samples.bounds,
        samples.values,
        tables.locations,
        tables.functions,
        tables.mappings,
    )


def fitted(tables: PprofTables, keep: int) -> PprofTables:
    """The tables with their keep - 1 largest samples (by bytes in use, then allocated)
    and one more that sums the others, its stack one location named LEFT_OUT; only the
    locations, functions and mappings left in use are kept, numbered anew."""
    samples = sample_arrays(tables.samples)
    values = samples.values
    in_use = values[:, SAMPLE_TYPES.index(("inuse_space", "bytes"))]
    allocated = values[:, SAMPLE_TYPES.index(("alloc_space", "bytes"))]
    order = np.lexsort((np.arange(len(values)), -allocated, -in_use))
    kept = np.sort(order[: keep - 1])
    ids, bounds = runs(samples.ids, samples.bounds, kept)
    out = tables_of(ids, bounds, values[kept], tables.locations, tables.functions, tables.mappings)
    assert isinstance(out.samples, Samples)
    out.functions.append(Function(LEFT_OUT, LEFT_OUT, "", 0))
    out.locations = LocationTable.of(out.locations).plus(Location(0, 0, [(len(out.functions), 0)]))
    out.samples = Samples(
        np.r_[out.samples.ids, len(out.locations)],
        np.r_[bounds, bounds[-1] + 1],
        np.vstack([values[kept], values[order[keep - 1 :]].sum(axis=0)]),
    )
    return out


def compacted(period: HeapPeriod) -> HeapPeriod:
    return dataclasses.replace(period, tables=compact(period.tables))
