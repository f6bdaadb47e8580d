"""The varints of profile.proto and OTLP, and pprof's Sample messages, made at once
for many (parser/common/protobuf.py varints, parser/report/pprof.py), against the
encoding the protocol-buffer documentation gives: 7 bits a byte, low group first, the
top bit set on all but the last; an int64 below zero as its two's complement, ten
bytes."""

from __future__ import annotations

import random

import numpy as np

from mem_profiler.parser.common.protobuf import varints
from mem_profiler.parser.report.pprof import _sample_messages


def reference(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_the_documentations_examples():
    data, sizes = varints(np.array([1, 150, 300, -1], np.int64))
    assert data.tobytes() == bytes.fromhex("01 9601 ac02 ffffffffffffffffff01")
    assert sizes.tolist() == [1, 2, 2, 10]


def test_every_width_at_its_edges_and_at_random():
    rng = random.Random(7)
    # 2^63 and up stand as int64 as their two's complement, below zero
    edges = [v for k in range(1, 10) for v in ((1 << 7 * k) - 1, 1 << 7 * k)]
    values = [v - (1 << 64) if v >= 1 << 63 else v for v in [0, *edges, (1 << 63) - 1]]
    values += [rng.randrange(-(1 << 63), 1 << 63) for _ in range(5000)]
    data, sizes = varints(np.array(values, np.int64))
    assert data.tobytes() == b"".join(map(reference, values))
    assert sizes.tolist() == [len(reference(v)) for v in values]


def test_nothing_gives_nothing():
    data, sizes = varints(np.array([], np.int64))
    assert data.tobytes() == b"" and len(sizes) == 0


def test_samples_at_once_are_the_messages_made_one_by_one():
    """pprof's Sample messages (field 2: packed location ids, field 1; packed values,
    field 2), as the push hands them over (lists), against ones built from `reference`."""

    def field(number: int, payload: bytes) -> bytes:
        return reference(number << 3 | 2) + reference(len(payload)) + payload

    samples = [([1, 2, 300], [1, 2, 3, 4]), ([7], [0, -1, 5, 1 << 40]), ([], [0, 0, 0, 9])]
    one_by_one = b"".join(
        field(2, field(1, b"".join(map(reference, ids))) + field(2, b"".join(map(reference, vs))))
        for ids, vs in samples
    )
    assert _sample_messages(samples) == one_by_one
    assert _sample_messages([]) == b""
