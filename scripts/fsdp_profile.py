"""Where an FSDP2 step of the benchmark's 1B transformer goes, kiln against FSDP2 by hand.

Run under torchrun, one process per GPU (``torchrun --standalone --nproc-per-node 2
scripts/fsdp_profile.py``). Each run trains a warm-up epoch, then profiles ``--steps`` steps
and rank 0 prints: milliseconds per step; the GPU's busy time split into computation and
collectives (NCCL), and how much of the collectives no computation hid; Dynamo's graphs,
graph breaks and recompilations; the costliest kernels. Runs:

- ``raw``: FSDP2 by hand, each block a unit, bf16 gathers, fused AdamW, eager (multi_gpu.py's);
- ``kiln``: kiln's Trainer, strategy="fsdp", its defaults (the step compiled);
- ``kiln-eager``: the same with compile=False;
- ``kiln-eager-blocks``: compile=False, and only the blocks sharded as units of their own (as
  by hand: the embeddings, final norm and head stay with the root), kiln's unit choice patched;
- ``kiln-units``: compile=False, each block compiled on its own before kiln shards it (as
  torchtitan does: FSDP's hooks then run outside the compiled code, no graph breaks).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _multi.transformer import SIZES, Decoder, token_loss


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _report(name: str, prof: torch.profiler.profile, wall_s: float, steps: int) -> None:
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    comm = [(e.time_range.start, e.time_range.end) for e in kernels if "nccl" in e.name.lower()]
    comp = [(e.time_range.start, e.time_range.end) for e in kernels if "nccl" not in e.name.lower()]
    busy, computing, communicating = _union(comm + comp), _union(comp), _union(comm)
    ms = lambda us: us / 1e3 / steps  # noqa: E731  (profiler times are microseconds)
    print(f"== {name}: {wall_s * 1e3 / steps:.1f} ms/step; GPU computing {ms(computing):.1f} ms, "
          f"collectives {ms(communicating):.1f} ms, of which not hidden "
          f"{ms(busy - computing):.1f} ms; GPU idle {max(0.0, wall_s * 1e3 / steps - ms(busy)):.1f}"
          " ms", flush=True)  # fmt: skip
    totals: dict[str, list[float]] = {}
    for e in kernels:
        entry = totals.setdefault(e.name[:90], [0.0, 0])
        entry[0] += e.time_range.end - e.time_range.start
        entry[1] += 1
    for kname, (us, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:14]:
        print(f"   {ms(us):8.2f} ms/step {count / steps:6.1f}x  {kname}")


def _dynamo_counts() -> str:
    from torch._dynamo.utils import counters

    breaks = sum(counters["graph_break"].values())
    return (f"Dynamo: {counters['stats']['unique_graphs']} graphs, {breaks} graph breaks, "
            f"{sum(counters['recompiles'].values())} recompilations")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="raw,kiln,kiln-eager,kiln-eager-blocks,kiln-units")
    parser.add_argument("--size", default="1b", choices=sorted(SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available()  # a CPU run (gloo, no kernels to count) checks the script
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    size = SIZES[args.size]
    n = args.batch_size * world * args.steps
    g = torch.Generator(device).manual_seed(0)
    tokens = torch.randint(0, size.vocab, (n, size.seq + 1), generator=g, device=device)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for run in args.runs.split(","):
        torch._dynamo.reset()
        from torch._dynamo.utils import counters

        counters.clear()
        torch.manual_seed(0)
        if run == "raw":
            step = _raw_step(size, device, rank, world, args.batch_size, x, y)
        else:
            step = _kiln_step(size, run, args.batch_size, x, y)
        step()  # warm-up: compile, allocate
        sync()
        dist.barrier()
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            step()
            sync()
            wall = time.perf_counter() - start
        if rank == 0:
            _report(run, prof, wall, args.steps)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
            print(f"   {_dynamo_counts()}; peak memory {peak:.1f} GiB", flush=True)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        dist.barrier()
    dist.destroy_process_group()


def _raw_step(size, device, rank, world, batch, x, y):  # type: ignore[no-untyped-def]
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    model = Decoder(size).to(device)
    cuda = device.type == "cuda"
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if cuda else None,
                                  reduce_dtype=torch.float32)  # fmt: skip
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=cuda)
    steps = len(x) // (batch * world)

    def epoch() -> None:
        for step in range(steps):
            lo = (step * world + rank) * batch
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = token_loss(model(x[lo : lo + batch]), y[lo : lo + batch])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return epoch


def _kiln_step(size, run, batch, x, y):  # type: ignore[no-untyped-def]
    from kiln.train import Trainer, _distributed

    model = Decoder(size)
    if run == "kiln-eager-blocks":
        _distributed.fsdp_units = lambda root: list(root.blocks)
    if run == "kiln-units":
        for i, block in enumerate(model.blocks):
            model.blocks[i] = torch.compile(block)
    trainer = Trainer(model, optimizer="adamw", lr=3e-4, loss=token_loss, log_every=10**9,
                      strategy="fsdp", compile="auto" if run == "kiln" else False)  # fmt: skip
    return lambda: trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0)


if __name__ == "__main__":
    main()
