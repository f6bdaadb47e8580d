"""A training step on a CUDA device, for the cost of tracking its tensors (issue 46's
bar: at most 1.10x the plain step): a 4-layer MLP trained with Adam on random data made
up front, its step timed with CUDA's own synchronization, after 20 warm-up steps.
It prints the median step in milliseconds and the tensors a step allocates.  Run it on
a machine with a GPU, plain and under `mem_profiler run`, in alternating rounds:

    python bench/torch_cuda_step.py [STEPS [BATCH]]"""

import statistics
import sys
import time

import torch
from torch import nn

WIDTH, LAYERS = 2048, 4


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    torch.manual_seed(0)
    layers = []
    for _ in range(LAYERS):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(WIDTH, 10)).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, WIDTH, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(20):
        step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["allocation.all.allocated"]
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    per_step = (torch.cuda.memory_stats()["allocation.all.allocated"] - before) / steps
    print(f"step_ms={statistics.median(times) * 1e3:.3f} tensors_per_step={per_step:.0f}")


if __name__ == "__main__":
    main()
