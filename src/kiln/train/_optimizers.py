"""Optimizers by name (kiln's and Keras's), class, instance or factory."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

# name -> (class, Keras's default learning rate)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], float]] = {
    "adam": (torch.optim.Adam, 1e-3),
    "adamw": (torch.optim.AdamW, 1e-3),
    "sgd": (torch.optim.SGD, 1e-2),
    "rmsprop": (torch.optim.RMSprop, 1e-3),
    "adagrad": (torch.optim.Adagrad, 1e-3),
    "adadelta": (torch.optim.Adadelta, 1e-3),
    "adamax": (torch.optim.Adamax, 1e-3),
    "nadam": (torch.optim.NAdam, 1e-3),
    "radam": (torch.optim.RAdam, 1e-3),
}
_FUSED = {torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad}


def make_optimizer(
    spec: Any, model: nn.Module, lr: float | None, device: torch.device, **kwargs: Any
) -> torch.optim.Optimizer:
    """Build the optimizer for ``model``'s trainable parameters.

    ``spec`` is a name ("adam", Keras's "Adam" too), an optimizer class, a ready optimizer, or a
    factory ``params -> optimizer``. Named and class optimizers use fused CUDA kernels on GPUs.
    """
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters, so there is nothing to optimize.")
    if isinstance(spec, str):
        key = spec.lower()
        if key not in OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {spec!r}. Known optimizers: {', '.join(OPTIMIZERS)}; or pass "
                "a torch.optim class, an optimizer instance, or a function params -> optimizer."
            )
        cls, default_lr = OPTIMIZERS[key]
        return _construct(cls, params, lr if lr is not None else default_lr, device, kwargs)
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return _construct(spec, params, lr, device, kwargs)
    if callable(spec):
        return spec(params)
    raise TypeError(f"optimizer must be a name, class, instance or factory; received {spec!r}.")


def _construct(
    cls: type[torch.optim.Optimizer],
    params: Iterable[nn.Parameter],
    lr: float | None,
    device: torch.device,
    kwargs: dict[str, Any],
) -> torch.optim.Optimizer:
    options = dict(kwargs)
    if lr is not None:
        options["lr"] = lr
    if cls in _FUSED and device.type == "cuda" and "foreach" not in options:
        options.setdefault("fused", True)
    return cls(params, **options)


OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
