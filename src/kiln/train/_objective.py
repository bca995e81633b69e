"""What the trainer minimizes and reports: losses and metrics over the model's outputs.

A model may return one tensor, a list/tuple or a dict of tensors; targets come in the same
structure. The objective returns the total loss and one device tensor of (sum, count) rows, one
row per logged name, so that the hot loop never copies a number to the host.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kiln.train._losses import (
    INTEGER_TARGET_LOSSES,
    LOGIT_LOSSES,
    PROBABILITY_LOSSES,
    get_loss,
    looks_like_probabilities,
)
from kiln.train._metrics import as_weighted_sum, get_metric


class Objective:
    def __init__(self, loss: Any, metrics: Any = None, loss_weights: Any = None) -> None:
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='cross_entropy' or loss='mse'.")
        self._spec = (loss, metrics, loss_weights)
        self.keys: list[str | int] | None = None  # output keys; None for a single tensor
        self.names: list[str] = []

    def build(self, out: Any) -> None:
        """Resolve losses and metrics per output, once the output structure is known."""
        loss, metrics, weights = self._spec
        if isinstance(out, Tensor):
            self.keys, prefixes = None, [""]
        elif isinstance(out, dict):
            self.keys, prefixes = list(out), [f"{k}_" for k in out]
        elif isinstance(out, (list, tuple)):
            self.keys, prefixes = list(range(len(out))), [f"output_{i}_" for i in range(len(out))]
        else:
            raise TypeError(f"The model returned {type(out).__name__}; expected tensors.")
        keys = self.keys if self.keys is not None else [None]
        n = len(keys)
        self.losses = [get_loss(_pick(loss, k, i, n, "loss")) for i, k in enumerate(keys)]
        self.weights = [
            float(_pick(weights, k, i, n, "loss_weights", default=1.0)) for i, k in enumerate(keys)
        ]
        self.metrics = []
        for i, k in enumerate(keys):
            wanted = _pick(metrics, k, i, n, "metrics", default=[], shared_list=True) or []
            wanted = [wanted] if isinstance(wanted, str) or callable(wanted) else wanted
            probs = self.losses[i][0] in PROBABILITY_LOSSES
            self.metrics.append([get_metric(m, self.losses[i][0], probs) for m in wanted])
        self.names = ["loss"]
        for prefix, metric_list in zip(prefixes, self.metrics, strict=True):
            if prefix:
                self.names.append(f"{prefix}loss")
            self.names.extend(prefix + name for name, _ in metric_list)

    def __call__(self, out: Any, y: Any, w: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.keys is None and not self.names:
            self.build(out)
        outs, ys = self._pairs(out, y)
        n = outs[0].shape[0]
        count = torch.full((), float(n), device=outs[0].device)
        total: Tensor | float = 0.0
        rows: list[tuple[Tensor, Tensor]] = []
        for o, t, (_, fn), weight, metric_list in zip(
            outs, ys, self.losses, self.weights, self.metrics, strict=True
        ):
            o = o.float()
            per_sample = fn(o, t)
            loss_sum, _ = as_weighted_sum(per_sample, w)
            total = total + weight * loss_sum / n
            if self.keys is not None:
                rows.append((loss_sum.detach(), count))
            with torch.no_grad():
                rows.extend(as_weighted_sum(m(o.detach(), t), w) for _, m in metric_list)
        assert isinstance(total, Tensor)
        rows.insert(0, (total.detach() * n, count))
        return total, torch.stack([torch.stack(r) for r in rows])

    def _pairs(self, out: Any, y: Any) -> tuple[list[Tensor], list[Any]]:
        if self.keys is None:
            return [out], [y]
        if isinstance(out, dict):
            if not isinstance(y, dict) or set(y) != set(out):
                got = list(y) if isinstance(y, dict) else type(y).__name__
                raise ValueError(
                    f"The model has outputs {list(out)}; targets must be a dict with "
                    f"the same keys, received {got}."
                )
            return [out[k] for k in self.keys], [y[k] for k in self.keys]
        if not isinstance(y, (list, tuple)) or len(y) != len(out):
            count = len(y) if isinstance(y, (list, tuple)) else type(y).__name__
            raise ValueError(
                f"The model has {len(out)} outputs; targets must be a list of "
                f"{len(out)} arrays, received {count}."
            )
        return list(out), list(y)

    def check_targets(self, out: Any, y: Any) -> None:
        """Check all targets once, before training: dtypes, shapes and class ranges."""
        outs, ys = self._pairs(out, y)
        for i, (o, t, (name, _)) in enumerate(zip(outs, ys, self.losses, strict=True)):
            where = "" if self.keys is None else f" for output {self.keys[i]!r}"
            if name in INTEGER_TARGET_LOSSES:
                _check_class_targets(name, o, torch.as_tensor(t), where)
            elif name in LOGIT_LOSSES or name in PROBABILITY_LOSSES:
                _check_same_shape(name, o, torch.as_tensor(t), where)
            if name in PROBABILITY_LOSSES and not looks_like_probabilities(o.float()):
                raise ValueError(
                    f"Loss {name!r}{where} follows Keras and expects probabilities (a final "
                    "softmax/sigmoid), but the model outputs values outside [0, 1]: they look "
                    "like logits. Use loss='cross_entropy' (or 'binary_cross_entropy'), which "
                    "takes logits, or end the model with a softmax/sigmoid activation."
                )


def _check_same_shape(name: str, out: Tensor, y: Tensor, where: str) -> None:
    if tuple(out.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"Loss {name!r}{where} needs targets shaped like the outputs: outputs have per-sample "
            f"shape {tuple(out.shape[1:])}, targets {tuple(y.shape[1:])}. Reshape the targets "
            "(e.g. y.reshape(-1, 1)) or change the last layer."
        )


def _check_class_targets(name: str, out: Tensor, y: Tensor, where: str) -> None:
    if y.is_floating_point():
        raise TypeError(
            f"Loss {name!r}{where} expects integer class labels, received {str(y.dtype)[6:]} "
            f"targets of shape {tuple(y.shape)}. Pass labels as integers (y.long()); for one-hot "
            "targets use loss='categorical_cross_entropy'."
        )
    classes = out.shape[1] if out.dim() > 1 else 1
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"Labels out of range{where}: the model outputs {classes} classes, so labels must be "
            f"in [0, {classes - 1}]; received labels in [{lo}, {hi}]. Check the labels or make "
            f"the last layer {hi + 1} wide."
        )


def _pick(
    spec: Any,
    key: Any,
    index: int,
    n: int,
    what: str,
    default: Any = None,
    shared_list: bool = False,
) -> Any:
    """The entry of a per-output ``spec``: a dict by output name, a list by position, or shared."""
    if spec is None:
        return default
    if isinstance(spec, dict):
        if key is None:
            raise ValueError(f"{what} is a dict, but the model has a single output.")
        return spec.get(key if isinstance(key, str) else f"output_{key}", default)
    if isinstance(spec, (list, tuple)) and not shared_list and key is not None:
        if len(spec) != n:
            raise ValueError(f"{what} has {len(spec)} entries, but the model has {n} outputs.")
        return spec[index]
    return spec
