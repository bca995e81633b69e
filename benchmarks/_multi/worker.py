"""One process of a multi-GPU benchmark run (started by torchrun from ``multi_gpu.py``).

Trains ``--model`` for ``--epochs`` epochs of ``--steps`` steps with ``--batch-size`` samples
(images, or sequences for the transformer) per process, either raw (DistributedDataParallel, or
FSDP2 for the transformer) or with kiln's fit(); rank 0 writes the global samples per second of
the timed epochs (all after the first) to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ for _speed
from _multi.transformer import SIZES, Decoder, token_loss


def _data(
    args: argparse.Namespace, world: int, shape: tuple[int, ...], classes: int, device: torch.device
):
    """The global set, the same on every rank (kiln shards it), made on the device: ResNet's is
    gigabytes, too slow to make on the host. The transformer's: random token sequences, each
    target the next token."""
    g = torch.Generator(device).manual_seed(0)
    n = args.batch_size * world * args.steps
    if args.model == "transformer":
        size = SIZES[args.size]
        tokens = torch.randint(0, size.vocab, (n, size.seq + 1), generator=g, device=device)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    x = torch.rand(n, *shape, generator=g, device=device)
    return x, torch.randint(0, classes, (n,), generator=g, device=device)


def _torch_model(name: str) -> nn.Module:
    if name == "resnet50":
        from _speed.torch_resnet import resnet50

        return resnet50()
    from _speed.torch_loops import torch_lenet

    return torch_lenet()


def raw_ddp(
    args: argparse.Namespace, rank: int, world: int, device: torch.device, x, y
) -> list[float]:
    """The reference: DDP, bf16 autocast and channels_last on GPUs, SGD, eager."""
    cuda = device.type == "cuda"
    model = _torch_model(args.model).to(device, memory_format=torch.channels_last if cuda else None)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None,
                                              gradient_as_bucket_view=True)  # fmt: skip
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    return _timed_epochs(args, rank, world, device, x.to(device), y.to(device),
                         lambda xb, yb: nn.functional.cross_entropy(ddp(xb), yb), opt)  # fmt: skip


def raw_fsdp(
    args: argparse.Namespace, rank: int, world: int, device: torch.device, x, y
) -> list[float]:
    """The transformer's reference: FSDP2 by hand, each block a unit, bf16 parameters gathered
    and fp32 gradients reduced on GPUs (MixedPrecisionPolicy), fused AdamW, eager."""
    torch.manual_seed(0)
    model, opt = raw_fsdp_model(args.size, device)
    return _timed_epochs(args, rank, world, device, x, y,
                         lambda xb, yb: token_loss(model(xb), yb), opt)  # fmt: skip


def raw_fsdp_model(size: str, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The transformer sharded by hand: each block a unit, the rest with the root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    cuda = device.type == "cuda"
    model = Decoder(SIZES[size]).to(device)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if cuda else None,
                                  reduce_dtype=torch.float32)  # fmt: skip
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model, torch.optim.AdamW(model.parameters(), lr=3e-4, fused=cuda)


def _timed_epochs(args: argparse.Namespace, rank: int, world: int, device: torch.device, x, y,
                  loss_of, opt: torch.optim.Optimizer) -> list[float]:  # fmt: skip
    """The raw loops' epochs: this rank's slice of each global batch, bf16 autocast on GPUs,
    each epoch timed between barriers."""
    cuda, times = device.type == "cuda", []
    for _ in range(args.epochs):
        dist.barrier()
        start = time.perf_counter()
        for step in range(args.steps):
            lo = (step * world + rank) * args.batch_size
            xb, yb = x[lo : lo + args.batch_size], y[lo : lo + args.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_of(xb, yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        times.append(time.perf_counter() - start)
    return times


# What-if variants of kiln's DDP set-up, for measuring before changing kiln: dynamo's handling
# of DDP (DDPOptimizer splits the compiled graph at gradient-bucket boundaries so all-reduces
# overlap the backward; the alternatives trade that overlap for bigger fused graphs) and DDP's
# own options, patched into the wrapper kiln builds. FSDP (the transformer): "blocks" shards
# only the blocks as units of their own (the embeddings, final norm and head stay with the
# root, as FSDP2 by hand does), "compiled-blocks" also compiles each block on its own before
# sharding and not kiln's step (torchtitan's way: FSDP's hooks run outside compiled code),
# "prefetch" has each block gather the next one's parameters as it starts (and the one before
# in the backward) instead of leaving it to the next block's own start; "full-shard" frees
# each unit's gathered parameters after its forward (reshard_after_forward=True: a second
# all-gather in the backward, the least memory; kiln keeps them where they fit); "bf16-reduce"
# reduces gradients in bf16 instead of fp32 (half the bytes).
FSDP_VARIANTS = ["blocks", "no-compile-blocks", "compiled-blocks", "prefetch", "full-shard",
                 "bf16-reduce"]  # fmt: skip
VARIANTS = ["default", "no-optimize-ddp", "python-reducer", "static-graph", "bucket-100",
            "bf16-grads", "no-broadcast-buffers", "no-compile", *FSDP_VARIANTS]  # fmt: skip


def apply_variant(name: str) -> None:
    import functools

    import torch._dynamo

    from kiln.train import _distributed

    ddp = _distributed.DistributedDataParallel
    if name == "no-optimize-ddp":
        torch._dynamo.config.optimize_ddp = False
    elif name == "python-reducer":
        torch._dynamo.config.optimize_ddp = "python_reducer"
        torch._dynamo.config.compiled_autograd = True
    elif name == "static-graph":
        _distributed.DistributedDataParallel = functools.partial(ddp, static_graph=True)  # type: ignore[misc]
    elif name == "bucket-100":
        _distributed.DistributedDataParallel = functools.partial(ddp, bucket_cap_mb=100)  # type: ignore[misc]
    elif name == "no-broadcast-buffers":  # no broadcast of rank 0's BatchNorm buffers a step
        _distributed.DistributedDataParallel = functools.partial(ddp, broadcast_buffers=False)  # type: ignore[misc]
    elif name == "bf16-grads":  # DDP's gradients all-reduced in bf16 (half the bytes)
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        def ddp_bf16(*args, **kwargs):  # type: ignore[no-untyped-def]
            wrapped = ddp(*args, **kwargs)
            wrapped.register_comm_hook(None, default_hooks.bf16_compress_hook)
            return wrapped

        _distributed.DistributedDataParallel = ddp_bf16  # type: ignore[misc]
    elif name == "prefetch":
        wrap = _distributed.Distributed.wrap

        def wrap_and_prefetch(self, model, *args, **kwargs):  # type: ignore[no-untyped-def]
            wrapped = wrap(self, model, *args, **kwargs)
            units = _distributed.fsdp_units(model)
            for before, after in itertools.pairwise(units):
                before.set_modules_to_forward_prefetch([after])
                after.set_modules_to_backward_prefetch([before])
            return wrapped

        _distributed.Distributed.wrap = wrap_and_prefetch  # type: ignore[method-assign]
    elif name == "bf16-reduce":
        import torch.distributed.fsdp as fsdp

        policy = fsdp.MixedPrecisionPolicy

        def bf16_policy(**kwargs):  # type: ignore[no-untyped-def]
            return policy(**{**kwargs, "reduce_dtype": kwargs.get("param_dtype")})

        fsdp.MixedPrecisionPolicy = bf16_policy  # type: ignore[misc,assignment]
    elif name == "full-shard":
        pass  # a Trainer option (kiln_fit)
    elif name in FSDP_VARIANTS:
        _distributed.fsdp_units = lambda root: list(root.blocks)


def kiln_fit(args: argparse.Namespace, x, y) -> list[float]:
    import kiln
    from kiln import callbacks as C

    apply_variant(args.variant)

    class Timer(C.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_epoch_begin(self, trainer, epoch):  # type: ignore[no-untyped-def]
            self.start = time.perf_counter()

        def on_epoch_end(self, trainer, epoch, logs):  # type: ignore[no-untyped-def]
            self.times.append(time.perf_counter() - self.start)  # logs were read: synced

    timer = Timer()
    eager = ("no-compile", "no-compile-blocks", "compiled-blocks")
    compile_option = False if args.variant in eager else "auto"
    if args.model == "transformer":  # any torch module, through kiln's Trainer, sharded
        torch.manual_seed(0)
        from kiln.train import Trainer

        decoder = Decoder(SIZES[args.size])
        if args.variant == "compiled-blocks":
            for i, block in enumerate(decoder.blocks):
                decoder.blocks[i] = torch.compile(block)
        trainer = Trainer(decoder, optimizer="adamw", lr=3e-4,
                          loss=token_loss, log_every=10**9, strategy="fsdp",
                          compile=compile_option,
                          reshard_after_forward=args.variant == "full-shard" or "auto")  # fmt: skip
        trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                    callbacks=[timer])  # fmt: skip
        return timer.times
    kwargs = {"augment": False} if args.model == "lenet5" else {}
    model = kiln.zoo.create_model(args.model, **kwargs)
    model.compile(optimizer="sgd", lr=0.1, momentum=0.9, loss="cross_entropy", log_every=10**9,
                  compile=compile_option)  # fmt: skip
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=[timer])
    return timer.times


MODELS = ["resnet50", "lenet5", "transformer"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--competitor", choices=["raw-ddp", "raw-fsdp", "kiln"], required=True)
    parser.add_argument("--model", choices=MODELS, default="resnet50")
    parser.add_argument("--size", choices=sorted(SIZES), default="1b", help="transformer only")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="default", help="kiln only")
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    shape, classes = ((3, 224, 224), 1000) if args.model == "resnet50" else ((1, 28, 28), 10)
    x, y = _data(args, world, shape, classes, device)
    if args.competitor == "raw-ddp":
        times = raw_ddp(args, rank, world, device, x, y)
    elif args.competitor == "raw-fsdp":
        times = raw_fsdp(args, rank, world, device, x, y)
    else:
        times = kiln_fit(args, x, y)
    if rank == 0:
        steady = statistics.median(times[1:])
        images = args.batch_size * world * args.steps
        result = {"img_s": images / steady, "epoch_s": times, "world": world,
                  "device": torch.cuda.get_device_name() if cuda else "CPU",
                  "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0,
                  "torch": torch.__version__}  # fmt: skip
        Path(args.out).write_text(json.dumps(result))
    dist.barrier()  # every rank done with its collectives before any tears the group down
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
