"""How far an optimized model strays from the original, and the refusal when it strays too far.

The error of a pass is measured on the whole output: ``max_abs`` is the largest absolute
difference from the original model's output, ``rel`` is ``max_abs`` divided by the largest
absolute value of the original output (so a logit vector of scale 30 tolerates a difference of
0.03 at ``rel=1e-3``). Every pass is compared with the *original* model, never with the pass
before it, so errors add up where a user would see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Check:
    """One pass's measured error against the original model."""

    name: str
    max_abs: float
    rel: float
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PassRejected(ValueError):
    """A pass changed the model's outputs more than its tolerance allows."""


def error(output: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max abs error, max abs error / max abs reference); inf where shapes or values break."""
    if output.shape != reference.shape:
        return float("inf"), float("inf")
    diff = (output.detach().float() - reference.detach().float()).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    if diff.isnan().any():
        max_abs = float("inf")
    scale = float(reference.detach().float().abs().max()) if reference.numel() else 0.0
    return max_abs, max_abs / scale if scale > 0 else max_abs


def check(name: str, output: torch.Tensor, reference: torch.Tensor, tolerance: float) -> Check:
    """Measure ``output`` against ``reference``; raise PassRejected past ``tolerance``."""
    max_abs, rel = error(output, reference)
    if not rel <= tolerance:  # also refuses nan
        raise PassRejected(
            f"the {name!r} pass changes the model's outputs by more than its tolerance: relative "
            f"error (max abs error / max abs output) must be <= {tolerance:g}. Received: "
            f"{rel:.3g} (max abs error {max_abs:.3g}, output shape {tuple(output.shape)} vs "
            f"{tuple(reference.shape)}). Use a wider precision, or pass tolerance= to accept it."
        )
    return Check(name, max_abs, rel, tolerance)


@contextmanager
def strict_fp32(benchmark: bool = False) -> Iterator[None]:
    """Full fp32 matmuls and convolutions (no TF32), optionally with cuDNN autotuning.

    The reference is computed in true fp32; an fp32 engine's CUDA graphs are captured inside this
    context, so they keep its kernels whatever the global flags are later.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(
            enabled=cudnn.enabled, benchmark=benchmark or cudnn.benchmark,
            deterministic=cudnn.deterministic, allow_tf32=False,
        ):  # fmt: skip
            yield
    finally:
        matmul.allow_tf32 = saved
