"""Event log records written by hand, as sampler/memprof_log.h lays them out."""

from __future__ import annotations

import struct

from mem_profiler.parser.eventlog import MAGIC, MARK, STACK, TIMELINE

MiB = 1 << 20


def header(index: int = 1, magic: bytes = MAGIC, version: int = 1, start: int = 10**18) -> bytes:
    return struct.pack("<8sIiQQQII", magic, version, 4242, 1, 1, start, index, 100)


def event(kind: int, t: int, size: int, address: int, stack: int = 0) -> bytes:
    return struct.pack("<BBHIqQQI", kind, 0, 36, 7, 10**18 + t, size, address, stack)


def stack_record(stack: int, frames: list[int]) -> bytes:
    return struct.pack(
        f"<BBHIIQ{len(frames)}Q", STACK, 0, 20 + 8 * len(frames), stack, len(frames), 0, *frames
    )


def timeline_record(t: int, peak: int, end: int) -> bytes:
    return struct.pack("<BBHqqqQ", TIMELINE, 0, 36, 10**18 + t, peak, end, 50 * MiB)


def mark_record(t: int, text: bytes, kind: int = 0, ident: int = 0) -> bytes:
    return struct.pack("<BBHIBqQ", MARK, 0, 25 + len(text), 7, kind, 10**18 + t, ident) + text
