"""The PyTorch workload of `make bench`: a 2-layer MLP trained for 30 SGD steps on the CPU,
on one thread, with random data made up front. The import of torch is part of it, as it is
of any program that uses torch (most of its distinct stacks come from there).

usage: torch_train.py [STEPS]"""

import sys

import torch
from torch import nn

BATCH, IN, HIDDEN, OUT = 256, 1024, 1024, 10


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(IN, HIDDEN)
        self.out = nn.Linear(HIDDEN, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(BATCH, IN)
    y = torch.randint(0, OUT, (BATCH,))
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
