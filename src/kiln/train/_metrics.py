"""Metrics that accumulate on the device: each batch adds (sum, count); reading divides.

A metric is a function ``(outputs, targets) -> per-sample values``; the trainer sums them with
the sample weights into one device tensor and copies it to the host only when logs are read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MetricFn = Callable[[Tensor, Tensor], Tensor]


def sparse_categorical_accuracy(out: Tensor, y: Tensor) -> Tensor:
    return (out.argmax(1) == y).float().reshape(out.shape[0], -1).mean(1)


def categorical_accuracy(out: Tensor, y: Tensor) -> Tensor:
    return (out.argmax(1) == y.argmax(1)).float()


def binary_accuracy(out: Tensor, y: Tensor, threshold: float = 0.0) -> Tensor:
    """For logits (threshold 0); Keras's name with probabilities uses 0.5 (see ``get_metric``)."""
    return ((out > threshold) == (y > 0.5)).float().reshape(out.shape[0], -1).mean(1)


def top5_accuracy(out: Tensor, y: Tensor) -> Tensor:
    return (out.topk(min(5, out.shape[1]), dim=1).indices == y[:, None]).any(1).float()


def mae(out: Tensor, y: Tensor) -> Tensor:
    return (out - y.to(out.dtype)).abs().reshape(out.shape[0], -1).mean(1)


def mse(out: Tensor, y: Tensor) -> Tensor:
    return (out - y.to(out.dtype)).square().reshape(out.shape[0], -1).mean(1)


METRICS: dict[str, MetricFn] = {
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "top5_accuracy": top5_accuracy,
    "sparse_top_k_categorical_accuracy": top5_accuracy,
    "mae": mae,
    "mean_absolute_error": mae,
    "mse": mse,
    "mean_squared_error": mse,
}


def get_metric(metric: str | MetricFn, loss_name: str, probabilities: bool) -> tuple[str, MetricFn]:
    """Resolve a metric to ``(log name, function)``; "accuracy" picks the kind from the loss."""
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if not isinstance(metric, str):
        raise TypeError(f"A metric must be a name or a function; received {metric!r}.")
    key = metric.lower()
    if key in ("accuracy", "acc"):
        return "accuracy", _accuracy_for(loss_name, probabilities)
    if key == "binary_accuracy" and probabilities:
        return key, lambda out, y: binary_accuracy(out, y, threshold=0.5)
    if key not in METRICS:
        raise ValueError(
            f"Unknown metric {metric!r}. Known metrics: accuracy, {', '.join(sorted(METRICS))}; "
            "or pass a function (outputs, targets) -> per-sample values."
        )
    return key, METRICS[key]


def _accuracy_for(loss_name: str, probabilities: bool) -> MetricFn:
    if "binary" in loss_name or loss_name == "bce":
        threshold = 0.5 if probabilities else 0.0
        return lambda out, y: binary_accuracy(out, y, threshold)
    if loss_name in ("categorical_cross_entropy", "categorical_crossentropy"):
        return categorical_accuracy
    return sparse_categorical_accuracy


def as_weighted_sum(values: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(sum(w * v), sum(w))`` as float32 device scalars."""
    values = values.float()
    if weights is None:
        return values.sum(), torch.full((), float(values.shape[0]), device=values.device)
    return (values * weights).sum(), weights.sum()
