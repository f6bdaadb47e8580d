"""The known allocations of the device fixtures (tests/fixtures/device_*.c; their
header comments hold the same tables).  Plain data; the tests import it:

    from standins.truth import SITES, heap_totals, OOM
    for rec in SITES["device_cuda"]: ...      # one record per (site, heap)
    heap_totals("device_acl")["hal"]          # {"allocs": 5, "alloc_bytes": 9 MiB, ...}

A record: site (the fixture's noinline function), heap (the sampler's heap
name), api (what the hook must see), size (bytes of each allocation, or a list
when they differ), allocs / alloc_bytes (everything allocated), live /
live_bytes (still allocated at exit), and for the hal heap the decoded flag
(device, memtype, module).  Every mode of a fixture has the same allocations;
the "oom" modes have their own table (OOM).

Each allocation is counted once, by the outermost API the program called:
cudaMalloc's own cuMemAlloc_v2 call, and the ACL stand-in's own halMemAlloc
calls, are not in SITES.  NESTED lists those inner calls (what the layer below
sees, e.g. a hal-heap view that includes ACL's allocations), for tests that
want them.
"""

from __future__ import annotations

from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# HAL memory types (flag bits 10-13).
SVM, DEV, HOST, DVPP = 0, 1, 2, 3
ACL_MODULE_ID = 3  # what the ACL stand-in puts in its own halMemAlloc flags


def hal_flag(device: int, memtype: int, module: int) -> int:
    """halMemAlloc's flag: bits 0-9 device id, 10-13 memory type, 56-63 module id."""
    return (device & 0x3FF) | ((memtype & 0xF) << 10) | ((module & 0xFF) << 56)


def _rec(
    site: str,
    heap: str,
    api: str,
    size: int | list[int],
    allocs: int,
    live: int,
    live_bytes: int | None = None,
    **label: int,
) -> dict[str, Any]:
    sizes = size if isinstance(size, list) else [size] * allocs
    assert len(sizes) == allocs
    rec: dict[str, Any] = {
        "site": site,
        "heap": heap,
        "api": api,
        "size": size,
        "allocs": allocs,
        "alloc_bytes": sum(sizes),
        "live": live,
        "live_bytes": live_bytes if live_bytes is not None else sum(sizes[:live]),
    }
    if label:
        rec["label"] = dict(
            label, flag=hal_flag(label["device"], label["memtype"], label["module"])
        )
    return rec


SITES: dict[str, list[dict]] = {
    # device_cuda local | global, device_cuda_direct direct
    "device_cuda": [
        _rec("alloc_weights", "cuda", "cudaMalloc", 4 * MiB, 8, 8),
        _rec("alloc_scratch", "cuda", "cudaMalloc", 2 * MiB, 4, 0),  # freed: free_scratch
        _rec("alloc_async", "cuda", "cudaMallocAsync", 1 * MiB, 3, 2),  # 1 cudaFreeAsync
        _rec("alloc_managed", "cuda", "cudaMallocManaged", 6 * MiB, 1, 1),
        _rec("alloc_pitched", "cuda", "cudaMallocPitch", 2 * MiB, 1, 1),  # w 1000, h 2048
        _rec("alloc_via_driver", "cuda", "cuMemAlloc_v2", 3 * MiB, 2, 1),  # 1 cuMemFree_v2
        _rec("alloc_via_driver_async", "cuda", "cuMemAllocAsync", 5 * MiB, 1, 1),
        _rec("alloc_expandable", "cuda", "cuMemCreate", 2 * MiB, 2, 2),
        _rec("alloc_expandable_tmp", "cuda", "cuMemCreate", 2 * MiB, 1, 0),  # cuMemRelease
        _rec("alloc_pinned", "cuda_host", "cudaMallocHost", 1 * MiB, 1, 1),
        _rec("alloc_staging", "cuda_host", "cudaHostAlloc", 512 * KiB, 2, 1),  # 1 cudaFreeHost
    ],
    # device_acl local | global, device_acl_linked linked
    "device_acl": [
        _rec("acl_alloc_weights", "acl", "aclrtMalloc", 2 * MiB, 4, 4),
        _rec("acl_alloc_scratch", "acl", "aclrtMalloc", 1 * MiB, 1, 0),  # aclrtFree
        _rec("acl_alloc_host", "acl_host", "aclrtMallocHost", 2 * MiB, 1, 1),
        _rec(
            "hal_alloc_dev1", "hal", "halMemAlloc", 1 * MiB, 3, 3, device=1, memtype=DEV, module=5
        ),
        # module 200 sets bit 63 of the flag on purpose
        _rec(
            "hal_alloc_dvpp",
            "hal",
            "halMemAlloc",
            4 * MiB,
            1,
            1,
            device=2,
            memtype=DVPP,
            module=200,
        ),
        _rec(
            "hal_alloc_svm", "hal", "halMemAlloc", 2 * MiB, 1, 0, device=3, memtype=SVM, module=7
        ),  # halMemFree
    ],
    # device_cuda_api RUNTIME: the driver API's every allocation entry point (the
    # runtime's calls fail: see RUNTIME_SITES)
    "device_cuda_api": [
        _rec("drv_alloc", "cuda", "cuMemAlloc_v2", 3 * MiB, 2, 1),  # 1 cuMemFree_v2
        _rec("drv_alloc_pitch", "cuda", "cuMemAllocPitch_v2", 1 * MiB, 1, 1),  # w 1000, h 1024
        _rec("drv_alloc_managed", "cuda", "cuMemAllocManaged", 2 * MiB, 1, 1),
        _rec("drv_alloc_async", "cuda", "cuMemAllocAsync", 1 * MiB, 2, 1),  # 1 cuMemFreeAsync
        _rec("drv_alloc_async_ptsz", "cuda", "cuMemAllocAsync_ptsz", 3 * MiB, 2, 1),
        _rec("drv_pool_device", "cuda", "cuMemAllocFromPoolAsync", 4 * MiB, 1, 1),
        _rec("drv_pool_host", "cuda_host", "cuMemAllocFromPoolAsync_ptsz", 2 * MiB, 2, 1),
        _rec("drv_alloc_host", "cuda_host", "cuMemAllocHost_v2", 1 * MiB, 1, 1),
        _rec("drv_host_alloc", "cuda_host", "cuMemHostAlloc", 512 * KiB, 2, 1),  # cuMemFreeHost
        _rec("drv_array", "cuda", "cuArrayCreate_v2", 128 * KiB, 1, 1),  # float 256 x 128
        _rec("drv_array_3d", "cuda", "cuArray3DCreate_v2", 256 * KiB, 2, 1),  # cuArrayDestroy
        _rec("drv_mipmapped", "cuda", "cuMipmappedArrayCreate", 43520, 1, 1),  # 4 levels, half
        _rec("drv_create_host", "cuda_host", "cuMemCreate", 2 * MiB, 1, 1),
        _rec("drv_graph", "cuda", "cuGraphAddMemAllocNode", 1 * MiB, 2, 1),  # a free node
    ],
    # device_foreign RUNTIME: its own allocations beside the memory it registers or
    # opens (FOREIGN_SITES), which no figure counts
    "device_foreign": [
        _rec("drv_alloc", "cuda", "cuMemAlloc_v2", 1 * MiB, 1, 1),
        _rec("drv_alloc_host", "cuda_host", "cuMemAllocHost_v2", 1 * MiB, 1, 1),
    ],
    # device_noruntime (host heap: no runtime, host work only)
    "device_noruntime": [
        _rec("host_work", "host", "malloc", 64 * KiB, 64, 64),
    ],
    # device_markers (host heap, inside marker ranges)
    "device_markers": [
        _rec("marked_nvtx", "host", "malloc", 64 * KiB, 16, 16),
        _rec("marked_mstx", "host", "malloc", 32 * KiB, 32, 32),
    ],
}

# Inner calls of the stand-ins themselves, below an allocation SITES already counts.
# device_cuda: cudaMalloc / cudaMallocPitch -> cuMemAlloc_v2, cudaMallocAsync ->
# cuMemAllocAsync, cudaMallocManaged -> cuMemAllocManaged (same bytes, same heap).
NESTED: dict[str, list[dict]] = {
    "device_cuda": [
        _rec("alloc_weights", "cuda", "cuMemAlloc_v2", 4 * MiB, 8, 8),
        _rec("alloc_scratch", "cuda", "cuMemAlloc_v2", 2 * MiB, 4, 0),
        _rec("alloc_async", "cuda", "cuMemAllocAsync", 1 * MiB, 3, 2),
        _rec("alloc_managed", "cuda", "cuMemAllocManaged", 6 * MiB, 1, 1),
        _rec("alloc_pitched", "cuda", "cuMemAlloc_v2", 2 * MiB, 1, 1),
    ],
    # device_acl: every ACL allocation is a halMemAlloc of the ACL stand-in's own.
    "device_acl": [
        _rec(
            "acl_alloc_weights",
            "hal",
            "halMemAlloc",
            2 * MiB,
            4,
            4,
            device=0,
            memtype=DEV,
            module=ACL_MODULE_ID,
        ),
        _rec(
            "acl_alloc_scratch",
            "hal",
            "halMemAlloc",
            1 * MiB,
            1,
            0,
            device=0,
            memtype=DEV,
            module=ACL_MODULE_ID,
        ),
        _rec(
            "acl_alloc_host",
            "hal",
            "halMemAlloc",
            2 * MiB,
            1,
            1,
            device=0,
            memtype=HOST,
            module=ACL_MODULE_ID,
        ),
    ],
}

# The "oom" modes (STANDIN_DEVICE_MEMORY set below 1 GiB + the weights): the
# weights site as above, then failed allocations (recorded, never live).
OOM: dict[str, dict] = {
    "device_cuda": {
        "sites": [SITES["device_cuda"][0]],
        "failures": [
            {
                "site": "alloc_too_much",
                "heap": "cuda",
                "api": "cudaMalloc",
                "requested": 1 * GiB,
                "error": 2,
            },  # cudaErrorMemoryAllocation
            {
                "site": "alloc_too_much_driver",
                "heap": "cuda",
                "api": "cuMemAlloc_v2",
                "requested": 1 * GiB,
                "error": 2,
            },  # CUDA_ERROR_OUT_OF_MEMORY
        ],
        # inside cudaMalloc(1 GiB): the runtime's cuMemAlloc_v2 fails with 2 too
        "nested_failures": [
            {
                "site": "alloc_too_much",
                "heap": "cuda",
                "api": "cuMemAlloc_v2",
                "requested": 1 * GiB,
                "error": 2,
            },
        ],
    },
    "device_acl": {
        "sites": [r for r in SITES["device_acl"] if r["site"] == "acl_alloc_weights"],
        "failures": [
            {
                "site": "acl_alloc_too_much",
                "heap": "acl",
                "api": "aclrtMalloc",
                "requested": 1 * GiB,
                "error": 207001,
            },  # ACL_ERROR_RT_MEMORY_ALLOCATION
            {
                "site": "hal_alloc_too_much",
                "heap": "hal",
                "api": "halMemAlloc",
                "requested": 1 * GiB,
                "error": 6,  # DRV_ERROR_OUT_OF_MEMORY
                "label": {"device": 1, "memtype": DEV, "module": 5},
            },
        ],
        # inside aclrtMalloc(1 GiB): the ACL stand-in's own halMemAlloc fails too
        "nested_failures": [
            {
                "site": "acl_alloc_too_much",
                "heap": "hal",
                "api": "halMemAlloc",
                "requested": 1 * GiB,
                "error": 6,
                "label": {"device": 0, "memtype": DEV, "module": ACL_MODULE_ID},
            },
        ],
    },
}
OOM_DEVICE_MEMORY = 256 * MiB  # a STANDIN_DEVICE_MEMORY that makes the oom modes fail

# device_cuda_api with NVIDIA's runtime: each runtime allocation entry point once,
# from its own site; the runtime fails them all (it stops at the stand-in driver's
# refusal of its export tables), so each is a failed allocation of these bytes.
RUNTIME_SITES = {  # site: (heap, api, requested bytes)
    "rt_malloc": ("cuda", "cudaMalloc", 1 * MiB),
    "rt_malloc_pitch": ("cuda", "cudaMallocPitch", 100_000),  # w 1000, h 100
    "rt_malloc_3d": ("cuda", "cudaMalloc3D", 131_072),  # 512 x 64 x 4
    "rt_malloc_array": ("cuda", "cudaMallocArray", 65_536),  # float 256 x 64
    "rt_malloc_3d_array": ("cuda", "cudaMalloc3DArray", 131_072),  # 4 x 8 bits 64x32x16
    "rt_malloc_mipmapped": ("cuda", "cudaMallocMipmappedArray", 172_032),  # 3 levels of 16 bits
    "rt_malloc_managed": ("cuda", "cudaMallocManaged", 2 * MiB),
    "rt_malloc_async": ("cuda", "cudaMallocAsync", 1 * MiB),
    "rt_malloc_async_ptsz": ("cuda", "cudaMallocAsync_ptsz", 3 * MiB),
    "rt_malloc_from_pool": ("cuda", "cudaMallocFromPoolAsync", 5 * MiB),
    "rt_malloc_from_pool_ptsz": ("cuda", "cudaMallocFromPoolAsync_ptsz", 6 * MiB),
    "rt_malloc_host": ("cuda_host", "cudaMallocHost", 512 * KiB),
    "rt_host_alloc": ("cuda_host", "cudaHostAlloc", 256 * KiB),
}

# device_foreign: memory registered with CUDA or opened through IPC, one site each:
# site: (heap, kind, api, bytes, kept). The ranges still registered or open at the
# end (kept) are their heap's notes; the others were unregistered or closed, and
# drv_ipc_reopen's open of drv_ipc_open's handle was closed again, leaving that one.
FOREIGN_SITES = {
    "rt_register": ("cuda_host", "host_register", "cudaHostRegister", 256 * KiB, True),
    "rt_register_tmp": ("cuda_host", "host_register", "cudaHostRegister", 128 * KiB, False),
    "rt_ipc_open": ("cuda", "ipc_open", "cudaIpcOpenMemHandle", 4 * MiB, True),
    "rt_ipc_open_tmp": ("cuda", "ipc_open", "cudaIpcOpenMemHandle", 1 * MiB, False),
    "drv_register": ("cuda_host", "host_register", "cuMemHostRegister_v2", 512 * KiB, True),
    "drv_register_v1": ("cuda_host", "host_register", "cuMemHostRegister", 64 * KiB, True),
    "drv_register_tmp": ("cuda_host", "host_register", "cuMemHostRegister_v2", 32 * KiB, False),
    "drv_ipc_open": ("cuda", "ipc_open", "cuIpcOpenMemHandle_v2", 2 * MiB, True),
    "drv_ipc_reopen": ("cuda", "ipc_open", "cuIpcOpenMemHandle_v2", 2 * MiB, False),
    "drv_ipc_open_v1": ("cuda", "ipc_open", "cuIpcOpenMemHandle", 3 * MiB, True),
}

# What NVIDIA's runtime (11.8, 12.1 to 12.9, 13.0) asks the driver for, of the
# functions the sampler wraps: (base name, version, flags), the per-thread default
# stream's flag 2 included; and the variant a driver gives for each.
NVIDIA_RUNTIME_REQUESTS = {
    ("cuGetProcAddress", 11030, 0): "cuGetProcAddress",
    ("cuGetProcAddress", 12000, 0): "cuGetProcAddress_v2",  # not asked by 11.8
    ("cuMemAllocManaged", 6000, 0): "cuMemAllocManaged",
    ("cuMemAlloc", 3020, 0): "cuMemAlloc_v2",
    ("cuMemAllocPitch", 3020, 0): "cuMemAllocPitch_v2",
    ("cuMemFree", 3020, 0): "cuMemFree_v2",
    ("cuMemFreeHost", 2000, 0): "cuMemFreeHost",
    ("cuMemHostAlloc", 2020, 0): "cuMemHostAlloc",
    ("cuMemAllocAsync", 11020, 0): "cuMemAllocAsync",
    ("cuMemAllocAsync", 11020, 2): "cuMemAllocAsync_ptsz",
    ("cuMemAllocFromPoolAsync", 11020, 0): "cuMemAllocFromPoolAsync",
    ("cuMemAllocFromPoolAsync", 11020, 2): "cuMemAllocFromPoolAsync_ptsz",
    ("cuMemFreeAsync", 11020, 0): "cuMemFreeAsync",
    ("cuMemFreeAsync", 11020, 2): "cuMemFreeAsync_ptsz",
    ("cuMemPoolCreate", 11020, 0): "cuMemPoolCreate",
    ("cuMemPoolDestroy", 11020, 0): "cuMemPoolDestroy",
    ("cuArrayCreate", 3020, 0): "cuArrayCreate_v2",
    ("cuArray3DCreate", 3020, 0): "cuArray3DCreate_v2",
    ("cuArrayDestroy", 2000, 0): "cuArrayDestroy",
    ("cuMipmappedArrayCreate", 5000, 0): "cuMipmappedArrayCreate",
    ("cuMipmappedArrayDestroy", 5000, 0): "cuMipmappedArrayDestroy",
    ("cuGraphAddMemAllocNode", 11040, 0): "cuGraphAddMemAllocNode",
    ("cuGraphAddMemFreeNode", 11040, 0): "cuGraphAddMemFreeNode",
    ("cuMemHostRegister", 6050, 0): "cuMemHostRegister_v2",
    ("cuMemHostUnregister", 4000, 0): "cuMemHostUnregister",
    ("cuIpcOpenMemHandle", 4010, 0): "cuIpcOpenMemHandle",
    ("cuIpcOpenMemHandle", 11000, 0): "cuIpcOpenMemHandle_v2",
    ("cuIpcCloseMemHandle", 4010, 0): "cuIpcCloseMemHandle",
    ("cuLaunchKernel", 4000, 0): "cuLaunchKernel",
    ("cuLaunchKernel", 7000, 2): "cuLaunchKernel_ptsz",
    ("cuMemcpyHtoD", 3020, 0): "cuMemcpyHtoD_v2",
    ("cuMemcpyHtoD", 7000, 2): "cuMemcpyHtoD_v2_ptds",
    ("cuMemcpyDtoH", 3020, 0): "cuMemcpyDtoH_v2",
    ("cuMemcpyDtoH", 7000, 2): "cuMemcpyDtoH_v2_ptds",
    ("cuMemcpyDtoD", 3020, 0): "cuMemcpyDtoD_v2",
    ("cuMemcpyDtoD", 7000, 2): "cuMemcpyDtoD_v2_ptds",
}

# What those runtimes also ask for, of the copies, sets and launches the sampler wraps
# (a block's uses), that only a real driver has: the stand-in answers them "not
# found", so the wrappers are seen in the runtime's table on a GPU (tests/gpu).
NVIDIA_RUNTIME_REQUESTS_OF_A_GPU = {
    ("cuMemcpy", 4000, 0): "cuMemcpy",
    ("cuMemcpy", 7000, 2): "cuMemcpy_ptds",
    ("cuMemcpyAsync", 4000, 0): "cuMemcpyAsync",
    ("cuMemcpyAsync", 7000, 2): "cuMemcpyAsync_ptsz",
    ("cuMemcpyHtoDAsync", 3020, 0): "cuMemcpyHtoDAsync_v2",
    ("cuMemcpyHtoDAsync", 7000, 2): "cuMemcpyHtoDAsync_v2_ptsz",
    ("cuMemcpyDtoHAsync", 3020, 0): "cuMemcpyDtoHAsync_v2",
    ("cuMemcpyDtoHAsync", 7000, 2): "cuMemcpyDtoHAsync_v2_ptsz",
    ("cuMemcpyDtoDAsync", 3020, 0): "cuMemcpyDtoDAsync_v2",
    ("cuMemcpyDtoDAsync", 7000, 2): "cuMemcpyDtoDAsync_v2_ptsz",
    ("cuMemsetD8", 3020, 0): "cuMemsetD8_v2",
    ("cuMemsetD8", 7000, 2): "cuMemsetD8_v2_ptds",
    ("cuMemsetD8Async", 3020, 0): "cuMemsetD8Async",
    ("cuMemsetD8Async", 7000, 2): "cuMemsetD8Async_ptsz",
    ("cuLaunchCooperativeKernel", 9000, 0): "cuLaunchCooperativeKernel",
    ("cuLaunchCooperativeKernel", 9000, 2): "cuLaunchCooperativeKernel_ptsz",
    ("cuLaunchKernelEx", 11060, 0): "cuLaunchKernelEx",
    ("cuLaunchKernelEx", 11060, 2): "cuLaunchKernelEx_ptsz",
}

# The stand-in runtime's start (tests/standins/libcudart.c), a part of NVIDIA's
# (12.4 to 13.0) in the same order: (symbol, version, flags, the driver's answer).
STANDIN_RUNTIME_REQUESTS = [
    ("", 0, 0, "-"),  # a probe with an empty name
    ("cuInit", 2000, 0, "cuInit"),
    ("cuGetProcAddress", 11030, 0, "cuGetProcAddress"),
    ("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2"),  # the one used from here on
    ("cuDriverGetVersion", 2020, 0, "cuDriverGetVersion"),
    ("cuMemAllocManaged", 6000, 0, "cuMemAllocManaged"),
    ("cuMemAlloc", 3020, 0, "cuMemAlloc_v2"),
    ("cuMemFree", 3020, 0, "cuMemFree_v2"),
    ("cuMemHostRegister", 6050, 0, "cuMemHostRegister_v2"),
    ("cuMemHostUnregister", 4000, 0, "cuMemHostUnregister"),
    ("cuMemAllocAsync", 11020, 0, "cuMemAllocAsync"),
    ("cuMemFreeAsync", 11020, 0, "cuMemFreeAsync"),
    ("cuIpcOpenMemHandle", 11000, 0, "cuIpcOpenMemHandle_v2"),
    ("cuIpcCloseMemHandle", 4010, 0, "cuIpcCloseMemHandle"),
]


def runtime_records(bytes_of: dict[str, int]) -> list[dict]:
    """RUNTIME_SITES as SITES records, for a runtime whose calls succeed (on a GPU):
    each allocated once and kept, of the bytes the program saw (the pitched ones,
    cudaMallocPitch and cudaMalloc3D, with the driver's pitch)."""
    return [
        _rec(site, heap, api, bytes_of[site], 1, 1)
        for site, (heap, api, _) in RUNTIME_SITES.items()
    ]


# Which fixture program runs which modes.
MODES: dict[str, dict[str, list[str]]] = {
    "device_cuda": {"device_cuda": ["local", "global", "oom"], "device_cuda_direct": ["direct"]},
    "device_acl": {"device_acl": ["local", "global", "oom"], "device_acl_linked": ["linked"]},
}

# device_churn: PAIRS cudaMalloc/cudaFree pairs (default 100000) of 1-4 MiB from
# churn(), plus one warm-up pair of 1 MiB from main(); nothing live at exit.
CHURN: dict[str, Any] = {
    "site": "churn",
    "heap": "cuda",
    "api": "cudaMalloc",
    "pairs": 100_000,
    "min_size": 1 * MiB,
    "max_size": 4 * MiB,
    "live": 0,
    "warmup": {"site": "main", "size": 1 * MiB},
}


def by_heap(fixture: str, sites: list[dict] | None = None) -> dict[str, dict[str, dict]]:
    """{heap: {site: record}} for a fixture."""
    out: dict[str, dict[str, dict]] = {}
    for rec in SITES[fixture] if sites is None else sites:
        out.setdefault(rec["heap"], {})[rec["site"]] = rec
    return out


def heap_totals(fixture: str, sites: list[dict] | None = None) -> dict[str, dict[str, int]]:
    """{heap: {allocs, alloc_bytes, live, live_bytes}} summed over a fixture's sites."""
    totals: dict[str, dict[str, int]] = {}
    for rec in SITES[fixture] if sites is None else sites:
        t = totals.setdefault(
            rec["heap"], dict.fromkeys(("allocs", "alloc_bytes", "live", "live_bytes"), 0)
        )
        for key in t:
            t[key] += rec[key]
    return totals
