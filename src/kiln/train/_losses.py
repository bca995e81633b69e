"""Losses by name: kiln's names take logits; Keras's names keep Keras's meaning.

Every loss here returns per-sample values (reduction happens in the trainer, which applies
sample and class weights the way Keras does: ``sum(w * loss) / batch_size``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


def _per_sample(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1).mean(1) if values.dim() > 1 else values


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Integer class targets (N,) or (N, d1, ...) against logits (N, C, ...)."""
    return _per_sample(F.cross_entropy(logits, target, reduction="none"))


def categorical_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """One-hot or soft targets (N, C) against logits (N, C)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1)


def binary_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    return _per_sample(
        F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    )


def mse(pred: Tensor, target: Tensor) -> Tensor:
    return _per_sample(F.mse_loss(pred, target.to(pred.dtype), reduction="none"))


def mae(pred: Tensor, target: Tensor) -> Tensor:
    return _per_sample(F.l1_loss(pred, target.to(pred.dtype), reduction="none"))


def huber(pred: Tensor, target: Tensor) -> Tensor:
    return _per_sample(F.huber_loss(pred, target.to(pred.dtype), reduction="none"))


_EPS = 1e-7


def _keras_sparse_cce(probs: Tensor, target: Tensor) -> Tensor:
    return _per_sample(F.nll_loss(probs.clamp(_EPS, 1 - _EPS).log(), target, reduction="none"))


def _keras_cce(probs: Tensor, target: Tensor) -> Tensor:
    probs = probs / probs.sum(1, keepdim=True)
    return -(target * probs.clamp(_EPS, 1 - _EPS).log()).sum(1)


def _keras_bce(probs: Tensor, target: Tensor) -> Tensor:
    p = probs.clamp(_EPS, 1 - _EPS)
    t = target.to(p.dtype)
    return _per_sample(-(t * p.log() + (1 - t) * (1 - p).log()))


LOGIT_LOSSES: dict[str, LossFn] = {
    "cross_entropy": cross_entropy,
    "categorical_cross_entropy": categorical_cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "bce": binary_cross_entropy,
    "mse": mse,
    "mean_squared_error": mse,
    "mae": mae,
    "mean_absolute_error": mae,
    "huber": huber,
}

# Keras's cross-entropies expect probabilities (from_logits=False), as a Keras model that ends
# in softmax/sigmoid produces; the trainer checks the first batch and says so if it gets logits.
PROBABILITY_LOSSES: dict[str, LossFn] = {
    "sparse_categorical_crossentropy": _keras_sparse_cce,
    "categorical_crossentropy": _keras_cce,
    "binary_crossentropy": _keras_bce,
}

INTEGER_TARGET_LOSSES = {"cross_entropy", "sparse_categorical_crossentropy"}


def get_loss(loss: str | LossFn | nn.Module) -> tuple[str, LossFn]:
    """Resolve a loss name, function or module to ``(name, per-sample function)``."""
    if isinstance(loss, str):
        key = loss.lower()
        fn = LOGIT_LOSSES.get(key) or PROBABILITY_LOSSES.get(key)
        if fn is None:
            names = sorted(LOGIT_LOSSES) + sorted(PROBABILITY_LOSSES)
            raise ValueError(
                f"Unknown loss {loss!r}. Known losses: {', '.join(names)}; or pass "
                "a function (outputs, targets) -> loss or a torch.nn loss module."
            )
        return key, fn
    if isinstance(loss, nn.Module) and hasattr(loss, "reduction"):
        module: Any = loss
        module.reduction = "none"
        return type(loss).__name__, lambda out, y: _per_sample(module(out, y))
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), _as_per_sample(loss)
    raise TypeError(
        f"loss must be a name, a function or a torch.nn loss module; received {loss!r}."
    )


def _as_per_sample(fn: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    def per_sample(out: Tensor, y: Tensor) -> Tensor:
        value = fn(out, y)
        return value.expand(out.shape[0]) if value.dim() == 0 else _per_sample(value)

    return per_sample


def looks_like_probabilities(out: Tensor) -> bool:
    """Whether ``out`` is in [0, 1] (one host sync: called once, on the first batch)."""
    return bool((((out >= 0) & (out <= 1)) | ~torch.isfinite(out)).all())
