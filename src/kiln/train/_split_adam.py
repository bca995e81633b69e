"""Fused Adam for small models: the same kernel, given enough pieces to fill the GPU.

torch's fused Adam (``fused=True``) updates a list of tensors in one kernel launch, giving each
CUDA block one chunk of at most 65,536 elements of one tensor. A small model has few chunks:
LeNet-5's 61,706 parameters are 10 tensors, its largest (the 400x120 weight, 48,000 elements)
a single chunk, so one block walks through it alone while the rest of the GPU idles. On an H100
that one launch took 52 us of LeNet's 255 us training step (2026-11-28,
``scripts/lenet_kernel_profile.py``).

``SplitFusedAdam`` calls the same fused kernel on views of each tensor cut into pieces of
``chunk`` elements, so every piece gets its own block. Each piece's update is the whole
tensor's update (Adam is elementwise), so the result is bitwise the optimizer's own step; the
optimizer's state stays what it is (``state_dict``, checkpoints and schedules are unchanged).
``optimizer.step()`` itself still runs while a parameter has no state yet (its first step
creates it) and for an optimizer with step hooks. The kernels are torch's own ops behind
``Adam(fused=True)`` (``torch._fused_adam_``, ``torch._fused_adamw_``), called as torch's
functional Adam calls them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

MAX_CHUNK = 65_536  # torch's own chunk: a tensor no larger gets one block either way
MIN_CHUNK = 4_096  # two passes of a 512-thread block with 4 elements a thread
BLOCKS_PER_SM = 2


class SplitFusedAdam:
    """``optimizer.step()`` for a fused Adam/AdamW, its tensors cut into ``chunk``-sized views."""

    def __init__(self, optimizer: torch.optim.Optimizer, chunk: int) -> None:
        self.optimizer = optimizer
        self.chunk = chunk

    def __call__(self) -> None:
        optimizer = self.optimizer
        params = (p for g in optimizer.param_groups for p in g["params"] if p.grad is not None)
        if _has_step_hooks(optimizer) or any(p not in optimizer.state for p in params):
            optimizer.step()  # its hooks run; a parameter's first step creates its state
            return
        with torch.no_grad():
            for group in optimizer.param_groups:
                self._step_group(group)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, unique_steps = ([] for _ in range(7))
        amsgrad = group["amsgrad"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.optimizer.state[p]
            tensors = [p, p.grad, state["exp_avg"], state["exp_avg_sq"]]
            if amsgrad:
                tensors.append(state["max_exp_avg_sq"])
            split = [_pieces(t, self.chunk) for t in _flat(tensors)]
            params += split[0]
            grads += split[1]
            exp_avgs += split[2]
            exp_avg_sqs += split[3]
            if amsgrad:
                max_sqs += split[4]
            steps += [state["step"]] * len(split[0])  # the kernel reads it; it is added to once
            unique_steps.append(state["step"])
        if not params:
            return
        torch._foreach_add_(unique_steps, 1)
        beta1, beta2 = group["betas"]
        fused = torch._fused_adamw_ if _decoupled(self.optimizer, group) else torch._fused_adam_
        fused(params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, amsgrad=amsgrad,
              lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
              eps=group["eps"], maximize=group["maximize"], grad_scale=None,
              found_inf=None)  # fmt: skip


def split_fused_adam(
    optimizer: torch.optim.Optimizer, device: torch.device
) -> SplitFusedAdam | None:
    """A ``SplitFusedAdam`` for ``optimizer`` when it is a fused Adam/AdamW whose largest tensor
    would leave most of the GPU idle; None when torch's own step is as good or this cannot
    reproduce it (other optimizers, mixed devices or dtypes, tensor betas, complex values)."""
    if device.type != "cuda" or not isinstance(optimizer, torch.optim.Adam):
        return None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not params or not all(g.get("fused") for g in optimizer.param_groups):
        return None
    if any(
        g.get("differentiable") or isinstance(g["betas"][0], Tensor) for g in optimizer.param_groups
    ):
        return None
    if len({(p.device, p.dtype) for p in params}) > 1 or params[0].is_complex():
        return None
    if any(type(p.data) is not torch.Tensor for p in params):  # FSDP's DTensors: left to torch
        return None
    sms = torch.cuda.get_device_properties(params[0].device).multi_processor_count
    chunk = chunk_size(sum(p.numel() for p in params), sms)
    if chunk >= MAX_CHUNK or max(p.numel() for p in params) <= chunk:
        return None
    return SplitFusedAdam(optimizer, chunk)


def chunk_size(elements: int, sms: int) -> int:
    """Elements per view: enough views for ``BLOCKS_PER_SM`` blocks on each SM, a power of two
    between ``MIN_CHUNK`` and ``MAX_CHUNK``."""
    target = max(1, elements // (BLOCKS_PER_SM * sms))
    chunk = 1 << (target - 1).bit_length()
    return min(max(chunk, MIN_CHUNK), MAX_CHUNK)


def _has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Step hooks (``register_step_pre_hook`` and the like, global or the optimizer's) run only
    in ``optimizer.step()``."""
    from torch.optim import optimizer as module

    hooks = (getattr(optimizer, "_optimizer_step_pre_hooks", None),
             getattr(optimizer, "_optimizer_step_post_hooks", None),
             getattr(module, "_global_optimizer_pre_hooks", None),
             getattr(module, "_global_optimizer_post_hooks", None))  # fmt: skip
    return any(hooks)


def _pieces(t: Tensor, chunk: int) -> list[Tensor]:
    return list(t.split(chunk)) if t.dim() == 1 else [t]


def _flat(tensors: list[Tensor]) -> list[Tensor]:
    """One-dimensional views of a parameter and its gradient and state, in memory order
    (channels_last weights too); the tensors themselves, unsplit, if they differ in layout."""
    first = tensors[0]
    if any(t.stride() != first.stride() or t.shape != first.shape for t in tensors):
        return tensors
    order = sorted(range(first.dim()), key=lambda d: -first.stride()[d])
    if not first.permute(order).is_contiguous():  # not dense: leave it to the kernel as is
        return tensors
    return [t.permute(order).view(-1) for t in tensors]


def _decoupled(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> bool:
    return bool(group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW)))
