"""The allocator's frames of a heap stack, and their cut: as jeprof and pprof do, a stack
loses everything from its leaf up to its last frame that belongs to the allocator, so
that its leaf is the program's function that asked for the memory."""

from __future__ import annotations

import os
import re

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.arrays import without_frames
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index

# Allocator functions by name, demangled (and without Rust's hashes): the malloc family,
# C++'s operator new and delete, the standard allocators' allocate, jemalloc's (its
# private `je_` prefix, its non-standard API, the static functions of a static build on
# its sample path), tcmalloc's and mimalloc's, Rust's allocator shims, and the allocators
# Python programs allocate through: CPython's (PyMem_*, PyObject_Malloc and what they call),
# numpy's data memory handler and its cache, and PyTorch's CPU allocator; the JVM's
# (HotSpot's os::malloc and AllocateHeap, which every native allocation of its own
# passes, and the operator new of its classes on the C heap); V8's (its allocation.h:
# Malloced's operator new, StrDup and the retrying Alloc*WithRetry that its zones take
# their segments through; NewArray below); and OpenSSL's CRYPTO_malloc family (BoringSSL's
# OPENSSL_malloc, a function there, a macro in OpenSSL).
ALLOCATOR_RE = re.compile(
    r"(?:malloc|calloc|realloc|reallocarray|free|cfree|posix_memalign|aligned_alloc|memalign"
    r"|valloc|pvalloc|__libc_\w*alloc|__libc_free"
    r"|operator (?:new|delete)(?:\[\])?(?:\(.*\))?"
    r"|(?:__gnu_cxx::new_allocator|std::__new_allocator|std::allocator|std::allocator_traits)"
    r"<.*>::allocate(?:\(.*\))?(?: const)?"
    r"|je_\w+|(?:m|r|x|d|sd|n)allocx\w*|newImpl\w*|imalloc\w*|ialloc\w*|prof_backtrace\w*"
    r"|prof_alloc_prep|prof_tctx_create|malloc_default|handleOOM"
    r"|tc_(?:malloc|calloc|cfree|free|memalign|posix_memalign|pvalloc|valloc|realloc"
    r"|new|delete|newarray|deletearray)\w*"
    r"|(?:\(anonymous namespace\)::)?do_(?:malloc|calloc|realloc|memalign|free)(?:_\w+)?"
    r"|tcmalloc::.*|TCMalloc\w*|DoSampledAllocation|MallocHook::\w+"
    r"|mi_\w*(?:alloc|new|free)\w*|_mi_\w+"
    r"|(?:__rustc::)?__r(?:ust|dl|g)_(?:alloc|alloc_zeroed|realloc)"
    r"|_?Py(?:Mem|Object)_(?:Raw|Debug|DebugRaw|Mi)?(?:Malloc|Calloc|Realloc|Alloc)"
    r"|PyDataMem_\w+|npy_(?:alloc|free)_cache\w*"
    r"|c10::(?:alloc_cpu|DefaultCPUAllocator::allocate)(?:\(.*\))?(?: const)?"
    r"|(?:os::(?:malloc|realloc|strdup|strdup_check_oom)|AllocateHeap|ReallocateHeap"
    r"|(?:CHeapObj<.*>|ResourceObj)::operator new(?:\[\])?)(?:\(.*\))?"
    r"|v8::internal::(?:Malloced::(?:operator new|New)|StrN?Dup|Alloc(?:AtLeast)?WithRetry"
    r"|AlignedAlloc(?:WithRetry)?)(?:\(.*\))?"
    r"|CRYPTO_(?:secure_)?(?:malloc|zalloc|realloc|clear_realloc|memdup|strdup|strndup"
    r"|aligned_alloc)|OPENSSL_(?:malloc|zalloc|realloc|memdup|strdup|strndup))"
)
# V8's NewArray<T>, a function template: its name begins with its return type, which a
# pattern of ALLOCATOR_RE's would have to scan every other name for
_V8_NEW_ARRAY = "v8::internal::NewArray<"
_V8_NEW_ARRAY_RE = re.compile(r"(?:.*[ *&])?v8::internal::NewArray<.*>(?:\(.*\))?")

# The profiler's in-process API (the package's root, api.py and the sampler's library,
# and cffi, which it calls through) allocates as the allocator does: on behalf of the
# program's function that called it; what it calls is cut with it. Its other modules are
# a program's like any other: the commands, profiled, call the readers that allocate.
_PROFILER_PYTHON_FILE_RE = re.compile(
    r"(?:^|/)(?:mem_profiler/(?:__init__|api|sampler_lib)|cffi/[^/]+(?:/[^/]+)?)\.py"
)


def is_allocator_function(name: str, python_file: str | None) -> bool:
    """A function of the allocator's by its name (native), or of the profiler's in-process
    API by its file."""
    if python_file is not None:
        return _PROFILER_PYTHON_FILE_RE.search(python_file) is not None
    return ALLOCATOR_RE.fullmatch(name) is not None or (
        _V8_NEW_ARRAY in name and _V8_NEW_ARRAY_RE.fullmatch(name) is not None
    )


# Allocator objects by file name: every frame in one is the allocator's, named or not
# (Debian strips its libjemalloc.so.2 of all but what it exports). libmemprof.so is the
# sampler, whose own frames a stack should never hold.
_ALLOCATOR_OBJECT_RE = re.compile(r"lib(?:jemalloc|tcmalloc|mimalloc|memprof)(?:[._-][^/]*)?")


def allocator_frames(
    profile: HeapProfile, addrs: np.ndarray, is_allocator_function: np.ndarray
) -> np.ndarray:
    """Per location (its address `addrs`, whether its function is the allocator's) whether
    it belongs to the allocator: by its function's name or by the object it is in."""
    maps = code_mappings(profile)
    in_allocator = np.array(
        [_ALLOCATOR_OBJECT_RE.fullmatch(os.path.basename(m.path)) is not None for m in maps]
        + [False],  # index -1: outside every mapping
        bool,
    )
    return is_allocator_function | in_allocator[mapping_index(maps, addrs)]


def cut_allocator_frames(
    frames: np.ndarray, alloc: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop each stack's frames from its leaf up to its last allocator frame (`alloc`, per
    frame), but never its last frame: a stack that is the allocator's alone keeps its
    outermost frame."""
    at = np.flatnonzero(alloc)
    stack = np.searchsorted(offsets, at, side="right") - 1
    inner = at < offsets[stack + 1] - 1
    at, stack = at[inner], stack[inner]
    if not len(at):
        return frames, offsets
    # a stack's frames are in order: its last allocator frame is its last of `at`
    last = np.r_[stack[1:] != stack[:-1], True]
    at, stack = at[last], stack[last]
    # the frames cut, from each stack's first up to `at`: a run each, marked at its ends
    # (one byte a frame: a Python program's stacks hold 10^7 frames)
    edges = np.zeros(len(frames) + 1, np.int8)
    edges[offsets[stack]] = 1
    edges[at + 1] = -1
    return without_frames(frames, offsets, np.cumsum(edges[:-1], dtype=np.int8) == 1)
