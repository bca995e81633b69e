"""Small plumbing between batches and models: calling, splitting, joining, precision."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16", "fp16", "fp8"):
        raise ValueError(
            f"precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'fp8'; received {precision!r}."
        )
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def build_model(model: nn.Module, x: Any, device: torch.device) -> None:
    """Create lazy weights: a Sequential from the data's sample shape, others by one forward."""
    from kiln.model import Sequential

    if isinstance(model, Sequential) and model.input_specs is None and isinstance(x, Tensor):
        model.build(tuple(x.shape[1:]), dtype=x.dtype)
    elif any(getattr(m, "built", True) is False for m in model.modules()):
        model.to(device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            call_model(model, x)
        model.train(was_training)


def call_model(model: nn.Module, x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return model(*x)
    if isinstance(x, dict):
        return model(**x)
    return model(x)


def split_batch(batch: tuple[Any, ...]) -> tuple[Any, Any, Tensor | None]:
    return batch[0], batch[1], batch[2] if len(batch) > 2 else None


def unpack_validation(data: Any) -> tuple[Any, Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            "validation_data must be a tuple (x, y) or (x, y, sample_weight); received "
            f"{type(data).__name__}"
            + (f" of length {len(data)}." if hasattr(data, "__len__") else ".")
        )
    return data[0], data[1], data[2] if len(data) == 3 else None


def flatten_lists(lists: list[list[Any]]) -> list[Any]:
    return [item for part in lists for item in part]


def concat_outputs(outs: list[Any]) -> Any:
    first = outs[0]
    if isinstance(first, Tensor):
        return torch.cat(outs)
    if isinstance(first, dict):
        return {k: torch.cat([o[k] for o in outs]) for k in first}
    return type(first)(torch.cat([o[i] for o in outs]) for i in range(len(first)))
