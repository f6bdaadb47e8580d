"""Where an object's functions start and end, from its call-frame information: the
table of .eh_frame_hdr (each FDE's start, sorted) and each FDE's length in .eh_frame.
A stripped program's functions have no names, but they have FDEs: its addresses are
shown by the start of the function that holds them (symbolize), one row a function.

Read for the encodings that compilers and linkers write (the table's datarel sdata4;
an FDE's pointers as its CIE's 'R' says); anything else, or a damaged section, leaves
out what it covers: its addresses stay as they are."""

from __future__ import annotations

import struct

import numpy as np

from mem_profiler.core.elf_headers import Section
from mem_profiler.parser.elf.dwarf_lines import sleb, uleb

_TABLE_ENCODING = 0x3B  # DW_EH_PE_datarel | DW_EH_PE_sdata4: what linkers write
_OMIT = 0xFF
# DW_EH_PE_* value formats (the low four bits) of a fixed size; absptr: an address
_SIZES = {0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}
_EXTENDED_LENGTH = 0xFFFFFFFF  # a 64-bit FDE, which no x86-64 or aarch64 tool writes


def function_ranges(
    hdr: Section, hdr_data: bytes, frame: Section, frame_data: bytes, little_endian: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the FDEs .eh_frame_hdr lists (its section and bytes; .eh_frame's
    the same), sorted by start: link-time addresses, uint64."""
    end = "<" if little_endian else ">"
    none = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    if len(hdr_data) < 4 or hdr_data[0] != 1 or hdr_data[3] != _TABLE_ENCODING:
        return none
    frame_pointer, count_encoding = hdr_data[1] & 0x0F, hdr_data[2]
    if frame_pointer not in _SIZES or count_encoding not in (0x03, 0x0B):  # udata4, sdata4
        return none
    at = 4 + _SIZES[frame_pointer]
    if len(hdr_data) < at + 4:
        return none
    (count,) = struct.unpack_from(end + "I", hdr_data, at)
    count = min(count, (len(hdr_data) - at - 4) // 8)
    table = np.frombuffer(hdr_data, np.dtype(end + "i4"), count * 2, at + 4).astype(np.int64)
    starts = hdr.addr + table[0::2]
    fdes = hdr.addr + table[1::2] - frame.addr  # offsets in .eh_frame
    inside = (fdes >= 0) & (fdes + 12 <= len(frame_data))
    starts, fdes = starts[inside], fdes[inside]
    words = np.frombuffer(frame_data, np.dtype(end + "u4"), len(frame_data) // 4)
    data = np.frombuffer(frame_data, np.uint8)
    ends = np.full(len(fdes), -1, np.int64)  # -1: its length unknown, left out
    aligned = fdes % 4 == 0  # as every linker lays them out
    length, cie_pointer = np.zeros(len(fdes), np.int64), np.zeros(len(fdes), np.int64)
    length[aligned] = words[fdes[aligned] // 4]
    cie_pointer[aligned] = words[fdes[aligned] // 4 + 1]
    cies = fdes + 4 - cie_pointer
    usable = aligned & (length != _EXTENDED_LENGTH) & (length >= 8) & (cie_pointer > 0)
    usable &= cies >= 0
    for cie in np.unique(cies[usable]).tolist():
        encoding = _fde_encoding(frame_data, cie, end)
        size = _SIZES.get(encoding & 0x0F) if encoding is not None else None
        if size is None:
            continue
        mine = np.flatnonzero(usable & (cies == cie))
        at_range = fdes[mine] + 8 + size  # past the length, the CIE pointer and the start
        fits = (at_range + size <= fdes[mine] + 4 + length[mine]) & (
            at_range + size <= len(frame_data)
        )
        mine, at_range = mine[fits], at_range[fits]
        ranges = np.zeros(len(mine), np.int64)
        for k in range(size):  # the range's bytes, unsigned, in the file's order
            byte = data[at_range + k].astype(np.int64)
            ranges |= byte << (8 * (k if end == "<" else size - 1 - k))
        ends[mine] = starts[mine] + ranges
    kept = (ends > starts) & (starts >= 0)
    order = np.argsort(starts[kept], kind="stable")
    return starts[kept][order].astype(np.uint64), ends[kept][order].astype(np.uint64)


def _fde_encoding(data: bytes, at: int, end: str) -> int | None:
    """The encoding of the pointers of the FDEs of the CIE at `at` (its augmentation's
    'R'; absptr without one); None for a CIE this reader does not take."""
    try:
        length, ident = struct.unpack_from(end + "II", data, at)
        if length in (0, _EXTENDED_LENGTH) or ident != 0:
            return None
        version = data[at + 8]
        nul = data.index(b"\0", at + 9, at + 4 + length)
        augmentation = data[at + 9 : nul]
        pos = nul + 1
        _, pos = uleb(data, pos)  # code alignment
        _, pos = sleb(data, pos)  # data alignment
        pos = pos + 1 if version == 1 else uleb(data, pos)[1]  # return address column
        if not augmentation:
            return 0x00
        if augmentation[:1] != b"z":
            return None
        _, pos = uleb(data, pos)  # the augmentation data's length
        for letter in augmentation[1:].decode("ascii"):
            if letter == "R":
                return data[pos]
            if letter == "P":  # a personality routine: its pointer's encoding, then it
                size = _SIZES.get(data[pos] & 0x0F)
                if size is None or data[pos] == _OMIT:
                    return None
                pos += 1 + size
            elif letter == "L":
                pos += 1
            elif letter not in "SB":
                return None
        return 0x00
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None
