"""A small PyTorch CUDA workload for tests/gpu/test_torch_cuda.py: tensors of
several sizes (the caching allocator's large and small segments), a matmul
(cuBLAS), frees that stay cached, and torch.cuda.memory_reserved() printed at
the end.  Everything still referenced at exit stays reserved: the caching
allocator never returns its segments to the driver at exit, so the `cuda`
heap's live bytes at the exit dump that came through it are what
memory_reserved() reports. cuBLAS allocates its handle's memory itself, besides."""

import torch

MiB = 1 << 20


def main() -> None:
    dev = torch.device("cuda")
    a = torch.randn(8192, 8192, device=dev)  # 256 MiB each
    b = torch.randn(8192, 8192, device=dev)
    c = a @ b  # cuBLAS
    kept = [torch.empty(n * MiB, dtype=torch.uint8, device=dev) for n in (3, 5, 17, 40, 100)]
    small = [torch.ones(1000 + i, device=dev) for i in range(50)]  # small-block segments
    tmp = torch.empty(512 * MiB, dtype=torch.uint8, device=dev)
    del tmp, a  # freed to the cache, not cudaFree
    d = c.sum() + sum(t.sum() for t in small)
    torch.cuda.synchronize()
    print(f"result={float(d):.3e}")
    print(f"memory_allocated={torch.cuda.memory_allocated()}")
    print(f"memory_reserved={torch.cuda.memory_reserved()}", flush=True)
    globals()["keep"] = (b, c, kept, small)


if __name__ == "__main__":
    main()
