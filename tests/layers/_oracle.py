"""Compare a kiln layer with a torch reference: outputs and gradients for inputs and weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.testing import assert_close


def outputs_and_grads(
    fn: Callable[[Tensor], Any], x: Tensor, params: Iterable[Tensor] = ()
) -> tuple[list[Tensor], list[Tensor | None]]:
    """``fn(x)`` as a list, and grads of a fixed weighted sum of it w.r.t. x and params."""
    x = x.detach().clone().requires_grad_(x.is_floating_point())
    out = fn(x)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    loss = sum((o * _probe(o)).sum() for o in outs)
    wrt = ([x] if x.requires_grad else []) + list(params)
    grads = torch.autograd.grad(loss, wrt, allow_unused=True) if wrt else ()
    return [o.detach() for o in outs], list(grads)


def assert_same(
    fn: Callable[[Tensor], Any],
    ref: Callable[[Tensor], Any],
    x: Tensor,
    params: Iterable[Tensor] = (),
    ref_params: Iterable[Tensor] | None = None,
    **tol: float,
) -> None:
    params = list(params)
    ys, grads = outputs_and_grads(fn, x, params)
    ys_ref, grads_ref = outputs_and_grads(ref, x, params if ref_params is None else ref_params)
    assert len(ys) == len(ys_ref)
    for y, y_ref in zip(ys, ys_ref):
        assert_close(y, y_ref, **tol)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert_close(g, g_ref, **tol)


def assert_matches_module(layer: nn.Module, ref: nn.Module, x: Tensor, **tol: float) -> None:
    """Build ``layer`` on ``x``, copy its state into ``ref`` (same keys), compare both ways."""
    layer(x)
    ref.to(x.device).load_state_dict(layer.state_dict())
    names = [n for n, _ in layer.named_parameters()]
    ref_params = dict(ref.named_parameters())
    assert sorted(names) == sorted(ref_params)
    assert_same(
        layer,
        ref,
        x,
        [p for _, p in layer.named_parameters()],
        [ref_params[n] for n in names],
        **tol,
    )


def _probe(t: Tensor) -> Tensor:
    """A deterministic, non-constant output gradient."""
    return torch.sin(torch.arange(t.numel(), device=t.device, dtype=t.dtype)).reshape(t.shape)
