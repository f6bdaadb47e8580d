"""The inlined calls of .debug_info's compile units, read straight from the section's
bytes (DWARF 2 to 5).

pyelftools builds objects for every attribute of every DIE, and a unit of a large
library holds tens of thousands of DIEs of which only the inlined calls matter: this
walk reads the attributes of DW_TAG_inlined_subroutine and of the functions they name,
and steps over everything else by its forms' sizes or its DW_AT_sibling."""

from __future__ import annotations

import functools
import os
import struct
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

from mem_profiler.parser.elf.dwarf_lines import (
    LineProgram,
    LineRows,
    line_rows,
    sleb,
    uleb,
    uleb_rest,
)

if TYPE_CHECKING:
    from elftools.dwarf.dwarfinfo import DWARFInfo

_TAG_INLINED, _TAG_SUBPROGRAM = 0x1D, 0x2E
# DIEs that can hold code with inlined calls: walked into, their other children skipped
# (lexical block, subprogram, module, namespace)
_CODE_SCOPES = frozenset({0x0B, 0x2E, 0x1E, 0x39})

_AT_SIBLING, _AT_NAME, _AT_LOW_PC, _AT_HIGH_PC = 0x01, 0x03, 0x11, 0x12
_AT_ABSTRACT_ORIGIN, _AT_SPECIFICATION, _AT_RANGES = 0x31, 0x47, 0x55
_AT_CALL_FILE, _AT_CALL_LINE, _AT_LINKAGE_NAME, _AT_MIPS_LINKAGE_NAME = 0x58, 0x59, 0x6E, 0x2007
_AT_STR_OFFSETS_BASE, _AT_ADDR_BASE, _AT_RNGLISTS_BASE = 0x72, 0x73, 0x74
_AT_STMT_LIST, _AT_COMP_DIR = 0x10, 0x1B
_LNCT_PATH, _LNCT_DIRECTORY_INDEX = 0x1, 0x2

# DW_FORM codes by how their values are read
_ADDR, _ADDRX, _ADDRX1, _ADDRX2, _ADDRX3, _ADDRX4 = 0x01, 0x1B, 0x29, 0x2A, 0x2B, 0x2C
_GNU_ADDR_INDEX, _GNU_STR_INDEX = 0x1F01, 0x1F02
_STRING, _STRP, _LINE_STRP, _STRX = 0x08, 0x0E, 0x1F, 0x1A
_STRX1, _STRX2, _STRX3, _STRX4 = 0x25, 0x26, 0x27, 0x28
_REF_ADDR, _REF1, _REF2, _REF4, _REF8, _REF_UDATA = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
_SEC_OFFSET, _RNGLISTX, _INDIRECT, _IMPLICIT_CONST, _SDATA = 0x17, 0x23, 0x16, 0x21, 0x0D
_BLOCK1, _BLOCK2, _BLOCK4, _BLOCK, _EXPRLOC = 0x0A, 0x03, 0x04, 0x09, 0x18
_LEB_FORMS = frozenset({0x0D, 0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02})
_ADDRESS_FORMS = frozenset({_ADDR, _ADDRX, _ADDRX1, _ADDRX2, _ADDRX3, _ADDRX4, _GNU_ADDR_INDEX})
_UNIT_REFS = frozenset({_REF1, _REF2, _REF4, _REF8, _REF_UDATA})
# sizes of the fixed-size forms; "offset" and "address" stand for the unit's own sizes
_FIXED: dict[int, int | str] = {
    0x0B: 1, 0x0C: 1, 0x11: 1, 0x25: 1, 0x29: 1,  # data1 flag ref1 strx1 addrx1
    0x05: 2, 0x12: 2, 0x26: 2, 0x2A: 2,  # data2 ref2 strx2 addrx2
    0x27: 3, 0x2B: 3,  # strx3 addrx3
    0x06: 4, 0x13: 4, 0x1C: 4, 0x28: 4, 0x2C: 4,  # data4 ref4 ref_sup4 strx4 addrx4
    0x07: 8, 0x14: 8, 0x20: 8, 0x24: 8,  # data8 ref8 ref_sig8 ref_sup8
    0x1E: 16,  # data16
    0x19: 0, 0x21: 0,  # flag_present implicit_const
    0x01: "address",
    # strp sec_offset line_strp strp_sup GNU_ref_alt GNU_strp_alt
    0x0E: "offset", 0x17: "offset", 0x1F: "offset",
    0x1D: "offset", 0x1F20: "offset", 0x1F21: "offset",
}  # fmt: skip

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


@dataclass(frozen=True)
class InlinedCall:
    """One DW_TAG_inlined_subroutine: the function inlined (`origin`, a DIE offset, -1
    when unknown), its call site and address ranges, and the call it is inlined into
    (-1: the real function)."""

    origin: int
    parent: int
    depth: int
    call_file: int | None
    call_line: int | None
    ranges: list[tuple[int, int]]


@dataclass
class _Abbrev:
    tag: int
    children: bool
    steps: list[int] = field(default_factory=list)  # skip: sizes, or -form where variable
    sibling_at: int = -1  # where a DW_AT_sibling of fixed place sits after the code
    sibling_in_unit: bool = True  # DW_FORM_ref4, else DW_FORM_ref_addr
    has_code: bool = False  # an address range: DW_AT_low_pc or DW_AT_ranges
    # what _attrs reads: (attribute, form, implicit constant, size, -1 where variable)
    reads: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class _Unit:
    offset: int
    end: int
    version: int
    offset_size: int
    addr_size: int
    abbrevs: dict[int, _Abbrev]
    top: int  # offset of its DIE
    stmt_list: int | None = None  # its line program in .debug_line
    comp_dir: str = ""
    base: int = 0  # DW_AT_low_pc: the base of its range lists
    addr_base: int = 0
    str_offsets_base: int = 0
    rnglists_base: int = 0


class DebugInfo:
    """The DIEs of one file's .debug_info, with the sections their attributes point into."""

    def __init__(self, dwarf: DWARFInfo) -> None:
        def data(section: object) -> bytes:
            return section.stream.getvalue() if section is not None else b""  # type: ignore[attr-defined]

        self.info = data(dwarf.debug_info_sec)
        self.abbrev = data(dwarf.debug_abbrev_sec)
        self.str = data(dwarf.debug_str_sec)
        self.line_str = data(dwarf.debug_line_str_sec)
        self.ranges = data(dwarf.debug_ranges_sec)
        self.rnglists = data(dwarf.debug_rnglists_sec)
        self.addr = data(dwarf.debug_addr_sec)
        self.str_offsets = data(dwarf.debug_str_offsets_sec)
        self.line = data(dwarf.debug_line_sec)
        self._abbrev_tables: dict[tuple[int, int, int, int], dict[int, _Abbrev]] = {}
        self._units: dict[int, _Unit] = {}
        self._unit_starts: list[int] | None = None

    def inlined_calls(
        self, unit_offset: int, wanted: list[int] | None = None
    ) -> tuple[list[InlinedCall], dict[int, str], list[tuple[int, int]] | None]:
        """The inlined calls of the unit at unit_offset, parents before children, and the
        name of each function they inline by its DIE offset; with `wanted` (sorted
        addresses in the unit), only those of the functions that hold one of them, and
        the address ranges read: these functions', and each wanted address in none
        (None: the whole unit was read).

        A function is stepped over with what it holds, so that a nested function's
        inlined calls (GCC's C extension) are read only with its outer function's.

        Raises ValueError if the unit is damaged."""
        try:
            unit = self._unit(unit_offset)
            spans: list[tuple[int, int]] | None = [] if wanted else None
            calls = self._walk(unit, wanted or None, spans)
            if spans is not None:
                spans += [(a, a + 1) for a in _not_held(wanted or [], spans)]
            names = {c.origin: self._function_name(unit, c.origin) for c in calls}
        except (IndexError, KeyError, struct.error, ValueError, RecursionError) as e:
            raise ValueError(f"damaged DWARF unit at {unit_offset:#x}: {e}") from None
        return calls, names, spans

    def unit_files(self, unit_offset: int) -> tuple[list[str], int]:
        """The file names of a unit's line program, made absolute, and the number of the
        first (DWARF 5 counts files from 0, earlier versions from 1); none without one.

        Raises ValueError if the unit or its line program is damaged."""
        files, first, _ = self.unit_lines(unit_offset, rows=False)
        return files, first

    def unit_lines(
        self, unit_offset: int, rows: bool = True
    ) -> tuple[list[str], int, LineRows | None]:
        """unit_files, and the rows of the line program (none with `rows` False).

        Raises ValueError if the unit or its line program is damaged."""
        try:
            unit = self._unit(unit_offset)
            if unit.stmt_list is None or unit.stmt_list >= len(self.line):
                return [], 1, None
            files, first, program = self._line_header(unit, unit.stmt_list)
            return files, first, line_rows(self.line, program) if rows and files else None
        except (IndexError, KeyError, struct.error, ValueError) as e:
            raise ValueError(f"damaged DWARF line program of unit {unit_offset:#x}: {e}") from None

    def _line_header(self, unit: _Unit, pos: int) -> tuple[list[str], int, LineProgram]:
        data = self.line
        length, offset_size, pos = _initial_length(data, pos)
        end = pos + length
        version = _U16.unpack_from(data, pos)[0]
        pos += 2
        addr_size = unit.addr_size
        if version >= 5:
            addr_size = data[pos]
            pos += 2  # the address size, the segment selector's
        header_length = _offset(data, pos, offset_size)
        pos += offset_size
        start = pos + header_length
        min_inst_length = data[pos]
        pos += 1
        max_ops = 1
        if version >= 4:
            max_ops = data[pos]
            pos += 1
        line_base, line_range, opcode_base = struct.unpack_from("<xbBB", data, pos)
        pos += 4
        operand_counts = data[pos : pos + opcode_base - 1]
        pos += opcode_base - 1
        if not 2 <= version <= 5 or addr_size not in (4, 8) or opcode_base == 0:
            raise ValueError(f"line program version {version}, address size {addr_size}")
        program = LineProgram(
            start, end, min_inst_length, max_ops, line_base, line_range, opcode_base,
            operand_counts,
        )  # fmt: skip
        # a unit of its own for the forms of the entries: this table's offset size
        forms = _Unit(0, 0, 5, offset_size, addr_size, {}, 0)
        forms.str_offsets_base = unit.str_offsets_base
        if version >= 5:
            dirs, pos = self._line_entries(forms, pos)
            entries, _ = self._line_entries(forms, pos)
            folders = [path for path, _ in dirs]
            first = 0
        else:
            folders, entries = [], []
            while data[pos]:
                end_of = data.index(0, pos)
                folders.append(_text(data[pos:end_of]))
                pos = end_of + 1
            pos += 1
            while data[pos]:
                end_of = data.index(0, pos)
                name = _text(data[pos:end_of])
                index, pos = uleb(data, end_of + 1)
                for _ in range(2):  # modification time, length
                    _, pos = uleb(data, pos)
                entries.append((name, index))
            pos += 1
            folders = ["", *folders]  # DWARF 4 counts directories from 1
            first = 1
        out = []
        for name, index in entries:
            folder = folders[index] if 0 < index < len(folders) else ""
            out.append(os.path.normpath(os.path.join(unit.comp_dir, folder, name)))
        return out, first, program

    def _line_entries(self, unit: _Unit, pos: int) -> tuple[list[tuple[str, int]], int]:
        """A DWARF 5 line table's directories or files: (path, directory index) each."""
        data = self.line
        count = data[pos]
        pos += 1
        formats = []
        for _ in range(count):
            kind, pos = uleb(data, pos)
            form, pos = uleb(data, pos)
            formats.append((kind, form))
        entries, pos = uleb(data, pos)
        out = []
        for _ in range(entries):
            path, index = "", 0
            for kind, form in formats:
                value, pos = self._read(form, 0, pos, unit, data)
                if kind == _LNCT_PATH:
                    path = (
                        _text(data[value : data.index(0, value)])
                        if form == _STRING
                        else self._string(unit, form, value) or ""
                    )
                elif kind == _LNCT_DIRECTORY_INDEX:
                    index = value
            out.append((path, index))
        return out, pos

    def _walk(
        self, unit: _Unit, wanted: list[int] | None, spans: list[tuple[int, int]] | None
    ) -> list[InlinedCall]:
        """The unit's inlined calls; with `wanted`, only in the functions that hold one
        of those addresses, whose ranges are added to `spans`."""
        data, abbrevs, end = self.info, unit.abbrevs, unit.end
        code, pos = self._code(unit.top)
        top = abbrevs[code]
        pos = self._skip(top, pos, unit)
        if not top.children:
            return []
        calls: list[InlinedCall] = []
        stack = [(True, -1, 0)]  # per open list of children: (collected, call, depth)
        while stack and pos < end:
            code = data[pos]
            pos += 1
            if code >= 0x80:
                code, pos = uleb_rest(data, pos, code)
            if code == 0:
                stack.pop()
                continue
            ab = abbrevs[code]
            collected, call, depth = stack[-1]
            if collected and ab.tag == _TAG_INLINED:
                attrs, pos = self._attrs(ab, pos, unit)
                calls.append(self._inlined(unit, attrs, call, depth + 1))
                if ab.children:
                    stack.append((True, len(calls) - 1, depth + 1))
                continue
            if collected and ab.tag == _TAG_SUBPROGRAM and wanted is not None:
                # a declaration or an abstract instance has no code of its own
                ranges, after = self._ranges_of(ab, pos, unit) if ab.has_code else ([], -1)
                collected = _any_held(wanted, ranges)
                if collected and spans is not None:
                    spans += ranges
            elif collected and ab.tag in _CODE_SCOPES:
                after = self._skip(ab, pos, unit)
            else:
                collected, after = False, -1
            if (
                not collected
                and ab.children
                and ab.sibling_at >= 0
                and pos < (to := self._sibling(ab, pos, unit)) <= end
            ):
                pos = to  # the whole subtree stepped over
                continue
            pos = after if after >= 0 else self._skip(ab, pos, unit)
            if ab.children:
                stack.append((True, call, depth) if collected else (False, 0, 0))
        return calls

    def _inlined(
        self, unit: _Unit, attrs: dict[int, tuple[int, int]], call: int, depth: int
    ) -> InlinedCall:
        origin = attrs.get(_AT_ABSTRACT_ORIGIN)
        return InlinedCall(
            self._reference(unit, *origin) if origin is not None else -1,
            call,
            depth,
            _constant(attrs.get(_AT_CALL_FILE)),
            _constant(attrs.get(_AT_CALL_LINE)),
            self._ranges(unit, attrs),
        )

    def _function_name(self, unit: _Unit, offset: int) -> str:
        """The (linkage, else plain) name of the function at DIE `offset`, through
        DW_AT_abstract_origin and DW_AT_specification; "??" if it has none."""
        plain = None
        for _ in range(8):  # the chain is short; a cycle in broken DWARF is not followed far
            if offset < 0:
                break
            if not unit.offset <= offset < unit.end:
                unit = self._unit_holding(offset)
            code, pos = self._code(offset)
            attrs, _ = self._attrs(unit.abbrevs[code], pos, unit)
            for key in (_AT_LINKAGE_NAME, _AT_MIPS_LINKAGE_NAME):
                if key in attrs and (name := self._string(unit, *attrs[key])) is not None:
                    return name
            if plain is None and _AT_NAME in attrs:
                plain = self._string(unit, *attrs[_AT_NAME])
            follow = attrs.get(_AT_ABSTRACT_ORIGIN) or attrs.get(_AT_SPECIFICATION)
            if follow is None:
                break
            offset = self._reference(unit, *follow)
        return plain or "??"

    # -- units and abbreviations

    def _unit(self, offset: int) -> _Unit:
        if offset in self._units:
            return self._units[offset]
        data = self.info
        length, offset_size, pos = _initial_length(data, offset)
        end = pos + length
        version = _U16.unpack_from(data, pos)[0]
        pos += 2
        if version >= 5:
            unit_type, addr_size = data[pos], data[pos + 1]
            abbrev_offset = _offset(data, pos + 2, offset_size)
            pos += 2 + offset_size
            pos += {4: 8, 5: 8, 2: 8 + offset_size, 6: 8 + offset_size}.get(unit_type, 0)
        else:
            abbrev_offset = _offset(data, pos, offset_size)
            addr_size = data[pos + offset_size]
            pos += offset_size + 1
        if not 2 <= version <= 5 or addr_size not in (4, 8) or end > len(data):
            raise ValueError(f"unit version {version}, address size {addr_size}")
        unit = _Unit(
            offset, end, version, offset_size, addr_size,
            self._abbrevs(abbrev_offset, offset_size, addr_size, version),
            pos,
        )  # fmt: skip
        code, at = self._code(pos)
        attrs, _ = self._attrs(unit.abbrevs[code], at, unit)
        unit.addr_base = _constant(attrs.get(_AT_ADDR_BASE)) or 0
        unit.str_offsets_base = _constant(attrs.get(_AT_STR_OFFSETS_BASE)) or 0
        unit.rnglists_base = _constant(attrs.get(_AT_RNGLISTS_BASE)) or 0
        if _AT_LOW_PC in attrs:
            unit.base = self._address(unit, *attrs[_AT_LOW_PC])
        unit.stmt_list = _constant(attrs.get(_AT_STMT_LIST))
        if _AT_COMP_DIR in attrs:
            unit.comp_dir = self._string(unit, *attrs[_AT_COMP_DIR]) or ""
        self._units[offset] = unit
        return unit

    def _unit_holding(self, offset: int) -> _Unit:
        if self._unit_starts is None:
            starts, pos, data = [], 0, self.info
            while pos + 4 <= len(data):
                starts.append(pos)
                length, _, pos = _initial_length(data, pos)
                pos += length
            self._unit_starts = starts
        index = bisect_right(self._unit_starts, offset) - 1
        if index < 0:
            raise ValueError(f"no unit holds DIE {offset:#x}")
        return self._unit(self._unit_starts[index])

    def _abbrevs(
        self, offset: int, offset_size: int, addr_size: int, version: int
    ) -> dict[int, _Abbrev]:
        """The abbreviation table at `offset`, its forms sized for a unit of these sizes
        (DWARF 2's DW_FORM_ref_addr is address-sized, later versions' offset-sized)."""
        key = (offset, offset_size, addr_size, min(version, 3))
        if key in self._abbrev_tables:
            return self._abbrev_tables[key]
        data, table = self.abbrev, {}
        while True:
            code, offset = uleb(data, offset)
            if code == 0:
                break
            tag, offset = uleb(data, offset)
            children = data[offset] != 0
            offset += 1
            attrs = []
            while True:
                at, offset = uleb(data, offset)
                form, offset = uleb(data, offset)
                if at == 0 and form == 0:
                    break
                implicit = 0
                if form == _IMPLICIT_CONST:
                    implicit, offset = sleb(data, offset)
                attrs.append((at, form, implicit))
            table[code] = _compile(tag, children, tuple(attrs), offset_size, addr_size, key[3])
        self._abbrev_tables[key] = table
        return table

    # -- attributes

    def _code(self, pos: int) -> tuple[int, int]:
        return uleb(self.info, pos)

    def _skip(self, ab: _Abbrev, pos: int, unit: _Unit) -> int:
        for step in ab.steps:
            if step >= 0:
                pos += step
            else:
                pos = self._skip_form(-step, pos, unit)
        return pos

    def _skip_form(self, form: int, pos: int, unit: _Unit, data: bytes | None = None) -> int:
        data = self.info if data is None else data
        if form in _LEB_FORMS:
            while data[pos] & 0x80:
                pos += 1
            return pos + 1
        if form == _STRING:
            return data.index(0, pos) + 1
        if form in (_BLOCK, _EXPRLOC):
            size, pos = uleb(data, pos)
            return pos + size
        if form == _BLOCK1:
            return pos + 1 + data[pos]
        if form == _BLOCK2:
            return pos + 2 + _U16.unpack_from(data, pos)[0]
        if form == _BLOCK4:
            return pos + 4 + _U32.unpack_from(data, pos)[0]
        if form == _INDIRECT:
            form, pos = uleb(data, pos)
            return self._read(form, 0, pos, unit, data)[1]
        raise ValueError(f"unknown form {form:#x}")

    def _sibling(self, ab: _Abbrev, pos: int, unit: _Unit) -> int:
        at = pos + ab.sibling_at
        if ab.sibling_in_unit:
            return unit.offset + _U32.unpack_from(self.info, at)[0]
        return _offset(self.info, at, unit.offset_size)

    def _attrs(self, ab: _Abbrev, pos: int, unit: _Unit) -> tuple[dict[int, tuple[int, int]], int]:
        """The DIE's attributes as {attribute: (form, raw value)}, and where it ends."""
        attrs, data = {}, self.info
        for at, form, implicit, size in ab.reads:
            if size >= 0:
                value = int.from_bytes(data[pos : pos + size], "little")
                pos += size
            else:
                value, pos = self._read(form, implicit, pos, unit)
            attrs[at] = (form, value)
        return attrs, pos

    def _read(
        self, form: int, implicit: int, pos: int, unit: _Unit, data: bytes | None = None
    ) -> tuple[int, int]:
        """A raw value (a number, an offset, an index; a string's start for
        DW_FORM_string) in `data` (.debug_info unless given) and the position after it."""
        data = self.info if data is None else data
        if form == _IMPLICIT_CONST:
            return implicit, pos
        size = _form_size(form, unit.offset_size, unit.addr_size, unit.version)
        if size is not None:
            return int.from_bytes(data[pos : pos + size], "little"), pos + size
        if form == _SDATA:
            return sleb(data, pos)
        if form in _LEB_FORMS:
            return uleb(data, pos)
        if form == _STRING:
            return pos, data.index(0, pos) + 1
        if form == _INDIRECT:
            form, pos = uleb(data, pos)
            return self._read(form, 0, pos, unit, data)
        return 0, self._skip_form(form, pos, unit, data)  # blocks: not read

    def _reference(self, unit: _Unit, form: int, value: int) -> int:
        """A reference's DIE offset in .debug_info; -1 for one into another file."""
        if form in _UNIT_REFS:
            return unit.offset + value
        return value if form == _REF_ADDR else -1

    def _address(self, unit: _Unit, form: int, value: int) -> int:
        if form == _ADDR:
            return value
        at = unit.addr_base + value * unit.addr_size
        return int.from_bytes(self.addr[at : at + unit.addr_size], "little")

    def _string(self, unit: _Unit, form: int, value: int) -> str | None:
        """The string of a string-class attribute; None for one in another file."""
        if form == _STRING:
            source, at = self.info, value
        elif form == _STRP:
            source, at = self.str, value
        elif form == _LINE_STRP:
            source, at = self.line_str, value
        elif form in (_STRX, _STRX1, _STRX2, _STRX3, _STRX4, _GNU_STR_INDEX):
            index = unit.str_offsets_base + value * unit.offset_size
            source, at = self.str, _offset(self.str_offsets, index, unit.offset_size)
        else:
            return None
        return _text(source[at : source.index(0, at)])

    def _ranges_of(self, ab: _Abbrev, pos: int, unit: _Unit) -> tuple[list[tuple[int, int]], int]:
        """The address ranges of the DIE whose attributes start at `pos`, and where it ends."""
        attrs, end = self._attrs(ab, pos, unit)
        return self._ranges(unit, attrs), end

    def _ranges(self, unit: _Unit, attrs: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
        """The [low, high) address ranges of a DIE: DW_AT_low_pc/high_pc or DW_AT_ranges."""
        if _AT_LOW_PC in attrs and _AT_HIGH_PC in attrs:
            low = self._address(unit, *attrs[_AT_LOW_PC])
            form, value = attrs[_AT_HIGH_PC]
            # DWARF 4+: a constant high_pc is the length
            end = self._address(unit, form, value) if form in _ADDRESS_FORMS else low + value
            return [(low, end)] if end > low else []
        if _AT_RANGES not in attrs:
            return []
        form, value = attrs[_AT_RANGES]
        if unit.version < 5:
            return self._ranges_v4(unit, value)
        if form == _RNGLISTX:
            at = unit.rnglists_base + value * unit.offset_size
            value = unit.rnglists_base + _offset(self.rnglists, at, unit.offset_size)
        return self._rnglist(unit, value)

    def _ranges_v4(self, unit: _Unit, pos: int) -> list[tuple[int, int]]:
        data, size, base = self.ranges, unit.addr_size, unit.base
        out: list[tuple[int, int]] = []
        top = (1 << (8 * size)) - 1
        while True:
            begin = int.from_bytes(data[pos : pos + size], "little")
            end = int.from_bytes(data[pos + size : pos + 2 * size], "little")
            if pos + 2 * size > len(data) or (begin == 0 and end == 0):
                return out
            pos += 2 * size
            if begin == top:
                base = end
            elif end > begin:
                out.append((begin + base, end + base))

    def _rnglist(self, unit: _Unit, pos: int) -> list[tuple[int, int]]:
        data, size, base = self.rnglists, unit.addr_size, unit.base
        out: list[tuple[int, int]] = []
        while True:
            kind = data[pos]
            pos += 1
            if kind == 0:  # DW_RLE_end_of_list
                return out
            if kind == 1:  # base_addressx
                index, pos = uleb(data, pos)
                base = self._address(unit, _ADDRX, index)
                continue
            if kind == 5:  # base_address
                base = int.from_bytes(data[pos : pos + size], "little")
                pos += size
                continue
            if kind in (2, 3):  # startx_endx, startx_length
                index, pos = uleb(data, pos)
                low = self._address(unit, _ADDRX, index)
                value, pos = uleb(data, pos)
                high = self._address(unit, _ADDRX, value) if kind == 2 else low + value
            elif kind == 4:  # offset_pair
                low, pos = uleb(data, pos)
                high, pos = uleb(data, pos)
                low, high = low + base, high + base
            elif kind in (6, 7):  # start_end, start_length
                low = int.from_bytes(data[pos : pos + size], "little")
                pos += size
                if kind == 6:
                    high = int.from_bytes(data[pos : pos + size], "little")
                    pos += size
                else:
                    length, pos = uleb(data, pos)
                    high = low + length
            else:
                raise ValueError(f"unknown range list entry {kind}")
            if high > low:
                out.append((low, high))


def _form_size(form: int, offset_size: int, addr_size: int, version: int) -> int | None:
    """The size of a fixed-size form's value in a unit of these sizes; None for a form of
    variable size."""
    if form == _REF_ADDR:  # DWARF 2's is address-sized
        return offset_size if version > 2 else addr_size
    size = _FIXED.get(form)
    return offset_size if size == "offset" else addr_size if size == "address" else size  # type: ignore[return-value]


@functools.lru_cache(maxsize=1 << 14)
def _compile(
    tag: int,
    children: bool,
    attrs: tuple[tuple[int, int, int], ...],
    offset_size: int,
    addr_size: int,
    version: int,
) -> _Abbrev:
    """An abbreviation with its skip steps: runs of fixed-size forms summed, a variable
    form as its negated code. Each unit has a table of its own, but their abbreviations
    are mostly the same few: each is made once (and never changed)."""
    ab = _Abbrev(tag, children, has_code=any(at in (_AT_LOW_PC, _AT_RANGES) for at, _, _ in attrs))
    run = 0
    for at, form, implicit in attrs:
        size = _form_size(form, offset_size, addr_size, version)
        width = size if size is not None and form != _IMPLICIT_CONST else -1
        ab.reads.append((at, form, implicit, width))
        if at == _AT_SIBLING and ab.sibling_at < 0 and not ab.steps:
            if form == _REF4 or (form == _REF_ADDR and size == offset_size):
                ab.sibling_at, ab.sibling_in_unit = run, form == _REF4
        if size is not None:
            run += size
        else:
            if run:
                ab.steps.append(run)
            ab.steps.append(-form)
            run = 0
    if run:
        ab.steps.append(run)
    return ab


def _any_held(addrs: list[int], ranges: list[tuple[int, int]]) -> bool:
    """Whether one of the sorted addrs is in one of the [low, high) ranges."""
    for low, high in ranges:
        i = bisect_left(addrs, low)
        if i < len(addrs) and addrs[i] < high:
            return True
    return False


def _not_held(addrs: list[int], ranges: list[tuple[int, int]]) -> list[int]:
    """The sorted addrs in none of the [low, high) ranges."""
    if not ranges:
        return addrs
    ranges = sorted(ranges)
    lows = [low for low, _ in ranges]
    reach = list(accumulate((high for _, high in ranges), max))
    return [a for a in addrs if (i := bisect_right(lows, a) - 1) < 0 or a >= reach[i]]


def _initial_length(data: bytes, pos: int) -> tuple[int, int, int]:
    """A unit's or line program's length, its offset size (4, or 8 in 64-bit DWARF) and
    where what the length counts begins."""
    length = _U32.unpack_from(data, pos)[0]
    if length == 0xFFFFFFFF:
        return _U64.unpack_from(data, pos + 4)[0], 8, pos + 12
    return length, 4, pos + 4


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _constant(attr: tuple[int, int] | None) -> int | None:
    return attr[1] if attr is not None else None


def _offset(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "little")
