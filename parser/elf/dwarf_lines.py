"""The rows of a DWARF line number program (DWARF 2 to 5, section 6.2), its state
machine run over .debug_line's bytes; and the LEB128 numbers DWARF is written in.
pyelftools' decoder builds an object per opcode and copies its state at every row: 20 s
for the 680,000 rows of the units a report of a Python program asks of libpython, where
this loop takes about one."""

from __future__ import annotations

import struct
from dataclasses import dataclass

_U16 = struct.Struct("<H")

# standard opcodes (DW_LNS_*) with a meaning here; the others' operands are skipped
_COPY, _ADVANCE_PC, _ADVANCE_LINE, _SET_FILE = 1, 2, 3, 4
_CONST_ADD_PC, _FIXED_ADVANCE_PC = 8, 9
# extended opcodes (DW_LNE_*)
_END_SEQUENCE, _SET_ADDRESS = 1, 2
_ADDRESS_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class LineProgram:
    """A line program's header fields that its opcodes use, and where they lie."""

    start: int  # the first opcode's offset in .debug_line
    end: int  # past the last
    min_inst_length: int
    max_ops: int  # operations per instruction (VLIW; 1 elsewhere)
    line_base: int
    line_range: int
    opcode_base: int
    operand_counts: bytes  # the standard opcodes' ULEB128 operands, opcode 1 first


@dataclass
class LineRows:
    """The rows of a program: address, file number (as the program counts them) and
    line, 0 at the end of a sequence (the address past it). A row at its sequence's end
    address holds no byte and is left out: the next sequence, or none, holds what
    follows."""

    addrs: list[int]
    files: list[int]
    lines: list[int]


def line_rows(data: bytes, program: LineProgram) -> LineRows:
    """Run `program` over data (.debug_line). Raises ValueError, IndexError or
    struct.error where it is damaged."""
    p = program
    if p.line_range == 0 or p.max_ops == 0 or p.end > len(data):
        raise ValueError("line program header out of range")
    rows = LineRows([], [], [])
    addrs, files, lines = rows.addrs, rows.files, rows.lines
    base, span, first_special = p.line_base, p.line_range, p.opcode_base
    unit, ops = p.min_inst_length, p.max_ops
    const_advance = (255 - first_special) // span
    pos, end = p.start, p.end
    address = op_index = 0
    file = line = 1
    sequence = 0  # where the rows of the sequence under way begin

    def advanced(steps: int) -> int:
        # the address after `steps` operations; op_index moves only where max_ops > 1
        nonlocal op_index
        if ops == 1:
            return (address + unit * steps) & _ADDRESS_MASK
        total = op_index + steps
        op_index = total % ops
        return (address + unit * (total // ops)) & _ADDRESS_MASK

    while pos < end:
        op = data[pos]
        pos += 1
        if op >= first_special:
            adjusted = op - first_special
            if ops == 1:  # advanced() inline: a call per row costs a fifth of the time
                address = (address + unit * (adjusted // span)) & _ADDRESS_MASK
            else:
                address = advanced(adjusted // span)
            line += base + adjusted % span
            addrs.append(address)
            files.append(file)
            lines.append(line)
        elif op == 0:
            length, pos = uleb(data, pos)
            if length == 0:
                continue
            sub, after = data[pos], pos + length
            if sub == _END_SEQUENCE:
                while len(addrs) > sequence and addrs[-1] == address:  # rows of no bytes
                    del addrs[-1], files[-1], lines[-1]
                addrs.append(address)
                files.append(file)
                lines.append(0)
                address = op_index = 0
                file = line = 1
                sequence = len(addrs)
            elif sub == _SET_ADDRESS:
                address = int.from_bytes(data[pos + 1 : after], "little")
                op_index = 0
            pos = after
        elif op == _COPY:
            addrs.append(address)
            files.append(file)
            lines.append(line)
        elif op == _ADVANCE_PC:
            steps, pos = uleb(data, pos)
            address = advanced(steps)
        elif op == _ADVANCE_LINE:
            delta, pos = sleb(data, pos)
            line += delta
        elif op == _SET_FILE:
            file, pos = uleb(data, pos)
        elif op == _CONST_ADD_PC:
            address = advanced(const_advance)
        elif op == _FIXED_ADVANCE_PC:
            address = (address + _U16.unpack_from(data, pos)[0]) & _ADDRESS_MASK
            op_index = 0
            pos += 2
        else:
            for _ in range(p.operand_counts[op - 1]):
                _, pos = uleb(data, pos)
    return rows


def uleb(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 at pos, and the offset past it."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    return uleb_rest(data, pos + 1, byte)


def uleb_rest(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """An unsigned LEB128 whose first byte, `first`, has its high bit set, read on from
    pos."""
    value, shift = first & 0x7F, 7
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def sleb(data: bytes, pos: int) -> tuple[int, int]:
    """The signed LEB128 at pos, and the offset past it."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                value -= 1 << shift
            return value, pos
