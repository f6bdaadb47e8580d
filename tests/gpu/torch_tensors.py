"""Known tensors on a CUDA device, for tests/gpu/test_torch_tensors.py: each site a
function that keeps, churns or frees tensors of sizes that are multiples of 512 bytes
(the caching allocator's rounding), so that the bytes the program asked for are the
bytes torch.cuda.memory_allocated() counts.  It prints its truth:

    site NAME heap=cuda allocs=N alloc_bytes=B live=N live_bytes=B
    memory_allocated=B memory_reserved=B

    python torch_tensors.py run      one phase, then exit keeping its tensors
    python torch_tensors.py serve    print "pid N", then answer "phase" (one phase, its
                                     lines, "done"), "many", "oom", "snapshot PATH"
                                     (torch's own memory snapshot, pickled) and "quit"
                                     on standard input

"many" keeps 400 tensors of 128 KiB in many_kept and takes 4000 of 64 KiB one after
another in many_churned: enough for estimates at a --device-rate that samples them.
"oom" holds 3 tensors of 256 MiB in hold_for_step and asks for 1 TiB: it prints the
error's type and memory_allocated as it failed, then lets them go."""

import os
import sys

import torch

MiB = 1 << 20
kept: list[torch.Tensor] = []


def tensor(nbytes):
    return torch.empty(nbytes, dtype=torch.uint8, device="cuda")


def site(name, allocs, alloc_bytes, live, live_bytes):
    print(f"site {name} heap=cuda allocs={allocs} alloc_bytes={alloc_bytes}", end=" ")
    print(f"live={live} live_bytes={live_bytes}")


def weights():
    kept.extend(tensor(3 * MiB + 512) for _ in range(8))
    site("weights", 8, 8 * (3 * MiB + 512), 8, 8 * (3 * MiB + 512))


def grads():
    kept.extend(tensor(40960) for _ in range(16))
    site("grads", 16, 16 * 40960, 16, 16 * 40960)


def activations():
    for _ in range(40):
        t = tensor(MiB)
        del t
    site("activations", 40, 40 * MiB, 0, 0)


def scratch():
    blocks = [tensor(30 * MiB) for _ in range(4)]
    del blocks
    torch.cuda.empty_cache()  # their segments go back to CUDA
    site("scratch", 4, 4 * 30 * MiB, 0, 0)


def phase():
    kept.clear()
    weights()
    grads()
    activations()
    scratch()
    torch.cuda.synchronize()
    print(f"memory_allocated={torch.cuda.memory_allocated()}")
    print(f"memory_reserved={torch.cuda.memory_reserved()}", flush=True)


def many_kept():
    kept.extend(tensor(128 * 1024) for _ in range(400))
    site("many_kept", 400, 400 * 128 * 1024, 400, 400 * 128 * 1024)


def many_churned():
    for _ in range(4000):
        t = tensor(64 * 1024)
        del t
    site("many_churned", 4000, 4000 * 64 * 1024, 0, 0)


def many():
    kept.clear()
    many_kept()
    many_churned()
    torch.cuda.synchronize()
    print(f"memory_allocated={torch.cuda.memory_allocated()}", flush=True)


def hold_for_step():
    return [tensor(256 * MiB) for _ in range(3)]


def oom():
    held = hold_for_step()
    try:
        tensor(1 << 40)
    except torch.OutOfMemoryError as e:
        print(f"error={type(e).__name__}")
    print(f"memory_allocated={torch.cuda.memory_allocated()}", flush=True)
    del held


def save_snapshot(path):
    """torch.cuda.memory._snapshot() now, pickled to `path`."""
    import pickle

    torch.cuda.synchronize()
    with open(path, "wb") as f:
        pickle.dump(torch.cuda.memory._snapshot(), f)


def main():
    torch.cuda.init()
    torch.cuda.synchronize()
    if sys.argv[1:] == ["serve"]:
        print(f"pid {os.getpid()}", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            if command == "oom":
                oom()
            elif command.startswith("snapshot "):
                save_snapshot(command.split(None, 1)[1])
            elif command == "many":
                many()
            else:
                phase()
            print("done", flush=True)
    else:
        phase()


if __name__ == "__main__":
    main()
