"""Addresses to frames, object by object: each mapped object's ELF image opened once
(kept across the profiles of one run, kept_images), its symbols, lines and inlined calls
looked up for the addresses a profile holds (Resolver)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

from mem_profiler.core import progress
from mem_profiler.core.errors import ElfError
from mem_profiler.core.frame_label import Where
from mem_profiler.core.profile import HeapProfile, NamedFrame
from mem_profiler.core.user_paths import NotReadableFor
from mem_profiler.parser.elf.image import ElfImage, demangle
from mem_profiler.parser.elf.object_lookup import ObjectLookup, look_up_all
from mem_profiler.parser.read.pprof import is_named_frame
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index
from mem_profiler.parser.symbols.names import FunctionTable
from mem_profiler.parser.symbols.program_file import in_sysroot, read_for
from mem_profiler.parser.symbols.python_frames import (
    PARSER_FRAMES,
    is_python_frame,
)

InlinedFrames = list[tuple[int, Where]]  # (function id, where) of inlined calls, innermost first
_PARSER_RECORDS = {address: NamedFrame(name, "", 0) for address, name in PARSER_FRAMES.items()}


class Resolver:
    """Turns unique addresses into function ids (into `functions`) and file:line."""

    def __init__(
        self,
        profile: HeapProfile,
        exe: ElfImage | None,
        exe_paths: set[str],
        lines: bool,
        warnings: list[str],
        sysroot: str | None = None,
    ) -> None:
        self.profile = profile
        self.sysroot = sysroot
        self.exe = exe
        self.exe_paths = exe_paths
        self.lines = lines
        self.warnings = warnings
        self.table = FunctionTable()
        # (path, label) of each stripped object with addresses it cannot name: said where
        # stacks of some weight show them (_stripped_warnings), not where a view folds them
        self.stripped: list[tuple[str, str]] = []
        # whose profile this is, when not the reader's: only what they may read is read
        self.on_behalf_of = read_for(profile)

    def _ids_of(
        self,
        names: list[str],
        system_names: list[str] | None = None,
        python_files: list[str | None] | None = None,
    ) -> np.ndarray:
        return np.array(self.table.ids(names, system_names, python_files), np.int64)

    def resolve(
        self, addrs: np.ndarray
    ) -> tuple[np.ndarray, list[tuple[str, int] | None], dict[int, InlinedFrames]]:
        """For each of the sorted unique addrs: function id and (file, line) or None; and
        for those where calls were inlined, each inlined function's id and (file, line),
        innermost first (the function's own (file, line) is then that of its call)."""
        func_of = np.full(len(addrs), -1, np.int64)
        locs: list[tuple[str, int] | None] = [None] * len(addrs)
        inlined: dict[int, InlinedFrames] = {}
        maps = code_mappings(self.profile)
        # addr - start + offset, computed as addr + (offset - start) modulo 2**64
        bases = np.array([(m.offset - m.start) % 2**64 for m in maps], np.uint64)
        paths = sorted({m.path for m in maps})
        path_ids = {path: i for i, path in enumerate(paths)}
        path_of_map = np.array([path_ids[m.path] for m in maps], np.int64)

        which = mapping_index(maps, addrs)
        inside = which >= 0
        path_of = np.full(len(addrs), -1, np.int64)
        path_of[inside] = path_of_map[which[inside]]
        file_offsets = addrs + bases[np.maximum(which, 0)] if len(maps) else addrs
        objects = []  # (path, image or None, the addresses in it)
        for p in np.unique(path_of[inside]).tolist():
            objects.append((paths[p], self._image(paths[p]), np.flatnonzero(path_of == p)))
        progress.stage(f"looking up {len(addrs):,} addresses in {len(objects)} objects")
        found = iter(
            look_up_all(
                [(image, file_offsets[sel]) for _, image, sel in objects if image is not None],
                self.lines,
            )
        )
        for path, image, sel in objects:
            if image is None:
                func_of[sel] = self._unresolved(path, file_offsets[sel])
            else:
                vaddrs = image.offsets_to_vaddrs(file_offsets[sel])
                self._name_object(path, image, sel, vaddrs, next(found), func_of, locs, inlined)
        self._resolve_records(addrs, func_of, locs)
        outside = np.flatnonzero(func_of < 0)
        func_of[outside] = self._ids_of([f"0x{a:x}" for a in addrs[outside].tolist()])
        return func_of, locs, inlined

    def _resolve_records(
        self, addrs: np.ndarray, func_of: np.ndarray, locs: list[tuple[str, int] | None]
    ) -> None:
        """Name the frames the profile names itself: Python frames by their
        `# python_frame:` lines, pprof's by its functions and lines (a frame no record
        names stays an address)."""
        for records, among, python in (
            (self.profile.python_frames, is_python_frame(addrs), True),
            (self.profile.named_frames | _PARSER_RECORDS, is_named_frame(addrs), False),
        ):
            at = np.flatnonzero(among)
            found = [
                (i, records[a])
                for i, a in zip(at.tolist(), addrs[at].tolist(), strict=True)
                if a in records
            ]
            if not found:
                continue
            frames = [frame for _, frame in found]
            files: list[str | None] | None = [f.file for f in frames] if python else None
            func_of[[i for i, _ in found]] = self._ids_of(
                [f.name for f in frames], python_files=files
            )
            for i, frame in found:  # a pprof line may be unknown (0)
                locs[i] = (frame.file, frame.line) if python or frame.line > 0 else None

    def _unresolved(self, path: str, addresses: np.ndarray) -> np.ndarray:
        """The ids of addresses of the object mapped from `path` that nothing names:
        `lib.so+0x1a2b` each."""
        label = os.path.basename(path)
        return self._ids_of([f"{label}+0x{a:x}" for a in addresses.tolist()])

    def _name_object(
        self,
        path: str,
        image: ElfImage,
        sel: np.ndarray,
        vaddrs: np.ndarray,
        lookup: ObjectLookup,
        func_of: np.ndarray,
        locs: list[tuple[str, int] | None],
        inlined: dict[int, InlinedFrames],
    ) -> None:
        """Name the addresses `sel`, those of the object mapped from `path` (at `vaddrs`
        in it), from its `lookup`."""
        label = os.path.basename(path)
        if lookup.error is not None:
            if image is self.exe:
                raise ElfError(lookup.error)
            self.warnings.append(f"{lookup.error} Its frames stay unresolved.")
            func_of[sel] = self._unresolved(path, vaddrs)
            return
        found = lookup.found
        unnamed = len(found) - int(found.sum())
        # A stripped library still names what it exports, as Debian ships them all; the
        # program's own functions are mostly static.
        if unnamed and lookup.stripped and (image is self.exe or not lookup.has_symbols):
            self.stripped.append((image.path, label))
        names = self._ids_of(lookup.names, lookup.mangled)
        func_of[sel[found]] = names[lookup.sym_of]
        func_of[sel[~found]] = self._unresolved(path, lookup.unnamed_at)
        for i, loc in zip(sel.tolist(), lookup.where, strict=True):
            locs[i] = loc
        for i, chain in zip(sel[found].tolist(), lookup.chains, strict=True):
            if chain:
                inlined[i] = self._inlined_frames(chain, locs, i)

    def _inlined_frames(
        self,
        chain: list[tuple[str, tuple[str, int] | None]],
        locs: list[tuple[str, int] | None],
        i: int,
    ) -> InlinedFrames:
        """Frames of the calls inlined at address i, innermost first: the innermost has the
        address's line, each caller the line of its call; so has, at last, the function
        the code is in (locs[i] is changed to it)."""
        names = [name for name, _ in chain]
        fids = self._ids_of([demangle(n) for n in names], names)
        places = [locs[i]] + [site for _, site in chain]
        if self.lines:
            locs[i] = places[-1]
        else:
            places = [None] * len(places)
        return list(zip(fids.tolist(), places[:-1], strict=True))

    def _image(self, path: str) -> ElfImage | None:
        """The ELF file behind a mapping, or None (with a warning) if it cannot be read."""
        if path in self.exe_paths:
            return self.exe
        if not path.startswith("/"):
            return None  # [vdso], anonymous JIT code and the like
        recorded = self.profile.build_ids.get(path)
        path = in_sysroot(path, self.sysroot)
        progress.stage(f"reading the symbols of {os.path.basename(path)}")
        try:
            image = opened(path, self.on_behalf_of)
        except NotReadableFor as e:
            self.warnings.append(
                f"{path} is not readable by the owner of {self.profile.path} (uid"
                f" {e.uid}): its frames stay unresolved."
            )
            return None
        except ElfError as e:
            self.warnings.append(f"{e} Its frames stay unresolved.")
            return None
        if recorded is not None and recorded != image.build_id:
            self.warnings.append(
                f"{path} on this machine has build-id {image.build_id or 'none'}, the profile"
                f" recorded {recorded}; its frames may be named wrongly."
            )
        return image


# The ELF images symbolize opened, kept for its next call within kept_images(): None
# outside it. By (path, the user it is read for), each with the file's identity then.
_kept: dict[tuple[str, int | None], tuple[tuple[int, ...], ElfImage]] | None = None


@contextlib.contextmanager
def kept_images() -> Iterator[None]:
    """Within the block, each object is opened and its symbols read once for every
    symbolize: for work that names one capture's stacks a batch at a time. The block's
    end lets them go (a long-lived process keeps no symbol tables between its tasks)."""
    global _kept
    outer = _kept
    if outer is None:
        _kept = {}
    try:
        yield
    finally:
        if outer is None:
            _kept = None


def opened(path: str, for_uid: int | None = None) -> ElfImage:
    """ElfImage(path, for_uid), the one kept_images keeps where the file is still the
    one it opened."""
    if _kept is None:
        return ElfImage(path, for_uid=for_uid)
    try:
        st = os.stat(path)
        identity: tuple[int, ...] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        identity = ()
    kept = _kept.get((path, for_uid))
    if kept is not None and identity and kept[0] == identity:
        return kept[1]
    image = ElfImage(path, for_uid=for_uid)
    if identity:
        _kept[path, for_uid] = identity, image
    return image
