"""Distributed training under torchrun: everything that differs from one process, in one place.

``kiln launch --gpus N script.py`` (torchrun underneath) starts N copies of an unchanged
script; each copy's trainer finds RANK/WORLD_SIZE in its environment, joins the process group
(NCCL on GPUs, gloo on CPUs), wraps the model in DistributedDataParallel, reads its shard of
every batch, and sums metrics across ranks only when they are read.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils._pytree import tree_map


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        return torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")

    def wrap(
        self, model: nn.Module, device: torch.device, strategy: str,
        param_dtype: torch.dtype | None = None, keep_gathered: bool = False,
    ) -> nn.Module:  # fmt: skip
        """DDP: a wrapper around the model. FSDP2: the model itself, each of ``fsdp_units``
        sharded in place, then the root (one all-gather per unit in forward and backward,
        parameters become DTensors). With ``param_dtype`` (bf16 training) FSDP gathers the
        parameters in that type, half the bytes of fp32, and reduces gradients in fp32; the
        shards and the optimizer stay fp32. ``keep_gathered``: every unit keeps its gathered
        parameters until its backward (one all-gather per unit a step, not two)."""
        if strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            policy = (
                MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
                if param_dtype is not None
                else MixedPrecisionPolicy()  # FSDP's default: nothing cast
            )
            units = fsdp_units(model)
            for i, unit in enumerate(units):
                # the last unit's parameters stay gathered after its forward in any case: the
                # backward starts with them (as torchtitan does)
                reshard = not keep_gathered and i < len(units) - 1
                fully_shard(unit, mp_policy=policy, reshard_after_forward=reshard)
            fully_shard(model, mp_policy=policy)
            return model
        ids = [device.index] if device.type == "cuda" else None
        # gradient_as_bucket_view: gradients are views into the all-reduce buckets (no copy)
        return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """A summed copy of ``t`` across ranks (the local tensor is left alone)."""
        total = t.clone()
        dist.all_reduce(total)
        return total

    def max(self, t: torch.Tensor) -> torch.Tensor:
        total = t.clone()
        dist.all_reduce(total, op=dist.ReduceOp.MAX)
        return total

    def shard(self, data: Any) -> Any:
        """This rank's contiguous part of a pytree of tensors (evaluation and prediction)."""
        n = _num_samples(data)
        lo, hi = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        if isinstance(data, torch.utils.data.Dataset):
            return torch.utils.data.Subset(data, range(lo, hi))
        return tree_map(lambda t: t[lo:hi] if isinstance(t, torch.Tensor) else t, data)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def from_environment() -> Distributed | None:
    """Join the process group torchrun describes in the environment; None when alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    ctx = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(ctx.local_rank)
        minutes = float(os.environ.get("KILN_DIST_TIMEOUT_MIN", "10"))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=minutes))
        # we opened it, we close it: a process that exits with the group's threads still
        # running can abort ("terminate called without an active exception")
        atexit.register(_destroy)
        previous_hook = sys.excepthook

        def note_failure(*args: Any) -> None:
            _failed.append(True)
            previous_hook(*args)

        sys.excepthook = note_failure
    return ctx


_failed: list[bool] = []  # an uncaught exception ends this process: leave at once
TEARDOWN_WAIT = timedelta(seconds=60)


# ``kiln launch`` names a folder here; a rank that closed its group cleanly leaves a file in it
FINISHED_DIR_VARIABLE = "KILN_LAUNCH_FINISHED_DIR"


def _destroy() -> None:
    """Close the group at exit. On gloo, first wait (up to ``TEARDOWN_WAIT``) for every rank
    to get here: a rank that closed while another still worked (rank 0 saving the model, say)
    aborted about one run in three on 2 CPU processes ("terminate called without an active
    exception"). A rank ending in an exception does not wait. A rank that gets to the end
    says so to ``kiln launch`` (``finished_marker``): what can still fail after that is the
    interpreter's own exit."""
    if not dist.is_initialized():
        return
    rank = dist.get_rank()
    if not _failed and dist.get_backend() == "gloo":
        with contextlib.suppress(Exception):  # a rank that is gone: close anyway
            dist.monitored_barrier(timeout=TEARDOWN_WAIT)
    dist.destroy_process_group()
    folder = os.environ.get(FINISHED_DIR_VARIABLE)
    if folder and not _failed:
        with contextlib.suppress(OSError):
            finished_marker(folder, rank).touch()


def finished_marker(folder: str, rank: int) -> Path:
    """The file rank ``rank`` leaves in ``kiln launch``'s folder once its work is done and its
    process group closed."""
    return Path(folder) / f"rank-{rank}.finished"


def _num_samples(data: Any) -> int:
    if isinstance(data, torch.utils.data.Dataset):
        return len(data)  # type: ignore[arg-type]
    leaves = [t for t in torch.utils._pytree.tree_leaves(data) if isinstance(t, torch.Tensor)]
    return leaves[0].shape[0]


def full_state_dict(model: nn.Module) -> dict[str, Any]:
    """A sharded model's whole weights, on the CPU (a collective: call it on every rank)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def save_sharded(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
) -> None:
    """A torch.distributed.checkpoint folder: each rank writes its shards, rank 0 the rest.
    Loadable by any number of processes, one included."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=os.fspath(path))
    if not dist.is_initialized() or dist.get_rank() == 0:
        torch.save(trainer_state, os.path.join(path, "trainer.pt"))


def load_sharded(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=os.fspath(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"])  # fmt: skip
    return torch.load(os.path.join(path, "trainer.pt"), weights_only=False)


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The modules FSDP2 shards one by one before the root, in forward order.

    Where the members of the model's ModuleLists and ModuleDicts (found at any depth) hold
    most of its trainable weights, those: a transformer's blocks, gathered one at a time.
    What no unit holds (embeddings, the final norm, the head) is sharded with the root and
    gathered in one collective, as FSDP2 by hand does: as units of their own they cost a
    collective each, way and back, and host time per step. A tiny transformer on 2 CPU
    processes trained twice as fast without them; the 1B one on 2 H200s ran within the calls'
    noise either way (133-142 sequences/s, 2026-11-28). Otherwise (a Sequential's layers, or
    a list of small heads beside a large backbone) each trainable child, lists opened up.
    """
    blocks = _listed(model)
    if blocks and 2 * _weights(blocks) >= _weights([model]):
        return blocks
    return _children(model)


def _listed(module: nn.Module) -> list[nn.Module]:
    units: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            units += [member for member in child.children() if _trainable(member)]
        else:
            units += _listed(child)
    return units


def _children(module: nn.Module) -> list[nn.Module]:
    units: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            units += _children(child)
        elif _trainable(child):
            units.append(child)
    return units


def _weights(modules: list[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())
