"""PyTorch on a CUDA device, for tests/gpu/test_torch_training.py; prints its truth as
`key=value` lines.

    python torch_training.py adam       an MLP trained with Adam for three steps, then
                                        a dump (mem_profiler.dump()) while its
                                        parameters, gradients and Adam's state are live:
                                        param_bytes, the active blocks of
                                        torch.cuda.memory._snapshot() (blocks, block_bytes)
                                        and memory_allocated
    python torch_training.py oom        holds 3 tensors of 256 MiB in hold_for_step,
                                        then asks for 1 TiB: prints the error's type and
                                        memory_allocated as it failed
    python torch_training.py limit      the same, with 512 MiB asked past a memory
                                        fraction 64 MiB over what the allocator holds:
                                        refused without a cudaMalloc
    python torch_training.py retry      caches a quarter of the device's free memory
                                        three times over, then asks for half of it: the
                                        cudaMalloc fails, the allocator gives its cache
                                        back and gets it; prints retried=1"""

import sys

import torch

import mem_profiler

MiB = 1 << 20


def adam():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256)
    ).to("cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = torch.randn(64, 512, device="cuda")
    targets = torch.randn(64, 256, device="cuda")
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    del loss
    active = [
        block
        for segment in torch.cuda.memory._snapshot()["segments"]
        for block in segment["blocks"]
        if block["state"] == "active_allocated"
    ]
    print(f"param_bytes={sum(p.numel() * p.element_size() for p in model.parameters())}")
    print(f"blocks={len(active)}")
    print(f"block_bytes={sum(block['size'] for block in active)}")
    print(f"memory_allocated={torch.cuda.memory_allocated()}")
    print(f"profile={mem_profiler.dump()}", flush=True)
    return model, optimizer, inputs, targets


def hold_for_step():
    return [torch.empty(256 * MiB, dtype=torch.uint8, device="cuda") for _ in range(3)]


def oom():
    held = hold_for_step()
    try:
        torch.empty(1 << 40, dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError as e:
        print(f"error={type(e).__name__}")
        print(f"memory_allocated={torch.cuda.memory_allocated()}", flush=True)
    return held


def limit():
    held = hold_for_step()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 64 * MiB) / total)
    try:
        torch.empty(512 * MiB, dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError as e:
        print(f"error={type(e).__name__}")
        print(f"memory_allocated={torch.cuda.memory_allocated()}", flush=True)
    return held


def retry():
    free, _ = torch.cuda.mem_get_info()
    quarter = (free // 4) & ~(2 * MiB - 1)
    cached = [torch.empty(quarter, dtype=torch.uint8, device="cuda") for _ in range(3)]
    del cached
    half = torch.empty(2 * quarter, dtype=torch.uint8, device="cuda")
    print(f"retried={int(torch.cuda.memory_stats()['num_alloc_retries'] > 0)}", flush=True)
    return half


{"adam": adam, "oom": oom, "limit": limit, "retry": retry}[sys.argv[1]]()
