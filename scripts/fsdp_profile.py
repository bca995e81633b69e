"""Where an FSDP2 step of the benchmark's 1B transformer goes, kiln against FSDP2 by hand.

Run under torchrun, one process per GPU (``torchrun --standalone --nproc-per-node 2
scripts/fsdp_profile.py``). Each run trains ``--warmup`` steps (compile, allocation), then
profiles the next ``--steps`` of the same loop or ``fit()``. Rank 0 prints milliseconds per
step; the GPU's busy time split into computation and collectives (NCCL), and how much of the
collectives no computation hid; Dynamo's graphs, graph breaks and recompilations; the
costliest kernels. Runs:

- ``raw``: FSDP2 by hand, each block a unit, bf16 gathers, fused AdamW, eager (multi_gpu.py's);
- ``kiln``: kiln's Trainer, strategy="fsdp", its defaults (the step compiled);
- ``kiln-eager``: the same with compile=False;
- ``kiln-units``: compile=False, each block compiled on its own before kiln shards it (as
  torchtitan does: FSDP's hooks then run outside the compiled code, no graph breaks).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _multi.transformer import SIZES, Decoder, token_loss
from _multi.worker import raw_fsdp_model


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


class Window:
    """Profiles steps ``first + 1 .. last`` (1-based) of a loop that calls ``after(step)``
    after each step: the profiler starts once step ``first`` is done, on every rank."""

    def __init__(self, first: int, last: int, sync: Any) -> None:
        self.first, self.last, self.sync = first, last, sync
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        self.profile = torch.profiler.profile(activities=activities)
        self.wall = 0.0

    def after(self, step: int) -> None:
        if step == self.first:
            self.sync()
            dist.barrier()
            self.profile.start()
            self.started = time.perf_counter()
        elif step == self.last:
            self.sync()
            self.wall = time.perf_counter() - self.started
            self.profile.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="raw,kiln,kiln-eager,kiln-units")
    parser.add_argument("--size", default="1b", choices=sorted(SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available()  # a CPU run (gloo, no kernels to count) checks the script
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    size, steps = SIZES[args.size], args.warmup + args.steps
    g = torch.Generator(device).manual_seed(0)
    tokens = torch.randint(0, size.vocab, (args.batch_size * world * steps, size.seq + 1),
                           generator=g, device=device)  # fmt: skip
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for run in args.runs.split(","):
        torch._dynamo.reset()
        from torch._dynamo.utils import counters

        counters.clear()
        torch.manual_seed(0)
        window = Window(args.warmup, steps, sync)
        if run == "raw":
            _raw(args.size, device, rank, world, args.batch_size, x, y, window)
        else:
            _kiln(size, run, args.batch_size, x, y, window)
        if rank == 0:
            _report(run, window.profile, window.wall, args.steps)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
            print(f"   {_dynamo_counts()}; peak memory {peak:.1f} GiB", flush=True)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        dist.barrier()
    dist.destroy_process_group()


def _raw(size, device, rank, world, batch, x, y, window):  # type: ignore[no-untyped-def]
    model, opt = raw_fsdp_model(size, device)
    for step in range(len(x) // (batch * world)):
        lo = (step * world + rank) * batch
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = token_loss(model(x[lo : lo + batch]), y[lo : lo + batch])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.after(step + 1)


def _kiln(size, run, batch, x, y, window):  # type: ignore[no-untyped-def]
    from kiln import callbacks as C
    from kiln.train import Trainer

    class Profiled(C.Callback):
        def on_batch_end(self, trainer: Any, step: int, logs: Any) -> None:
            window.after(step)

    model = Decoder(size)
    if run == "kiln-units":
        for i, block in enumerate(model.blocks):
            model.blocks[i] = torch.compile(block)
    trainer = Trainer(model, optimizer="adamw", lr=3e-4, loss=token_loss, log_every=10**9,
                      strategy="fsdp", compile="auto" if run == "kiln" else False)  # fmt: skip
    trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0, callbacks=[Profiled()])


if __name__ == "__main__":
    main()
