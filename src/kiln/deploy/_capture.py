"""The one capture point: ``torch.export`` of the original model with a dynamic batch size.

Everything downstream (passes, AOTInductor packages, ONNX, the stored program) starts from this
program, so what is compiled is exactly what was checked.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.export import Dim, ExportedProgram


def tile(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows from ``x``, repeating its rows as needed."""
    reps = math.ceil(n / len(x))
    return x.repeat(reps, *[1] * (x.dim() - 1))[:n]


def capture(model: nn.Module, example: torch.Tensor) -> ExportedProgram:
    """Export ``model`` (in eval mode) for any batch size; errors say what torch.export said."""
    eval_mode(model)
    x = tile(example, max(2, len(example)))  # a batch of 1 would specialize the batch to 1
    try:
        try:
            return _export(model, x)
        except Exception:
            # Some kernels' meta functions branch on "batch == 1" (cuDNN's, on CUDA with torch
            # 2.11), which guards the batch to >= 2; size-oblivious tracing keeps 1 allowed.
            from torch.fx.experimental import _config

            with _config.patch(backed_size_oblivious=True):  # type: ignore[attr-defined]
                return _export(model, x)
    except Exception as e:  # torch.export raises many error types; all mean "not capturable"
        raise RuntimeError(
            f"kiln.deploy needs a model that torch.export can capture with a dynamic batch "
            f"size (no Python branching on tensor values or on the batch size). torch.export "
            f"failed on {type(model).__name__} with input shape {tuple(x.shape)}: "
            f"{type(e).__name__}: {e}"
        ) from e


def _export(model: nn.Module, x: torch.Tensor) -> ExportedProgram:
    batch = Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(OneInput(model), (x,), dynamic_shapes=({0: batch},))


MAX_BATCH = 65535  # CUDA kernels guard the batch to a grid dimension's limit


class OneInput(nn.Module):
    """``model(x)`` with a one-tensor signature (a functional kiln Model takes ``*args``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def eval_mode(model: nn.Module) -> nn.Module:
    """``model.eval()``; an exported program's module is always in inference form already."""
    with contextlib.suppress(NotImplementedError):  # unlifted programs refuse train/eval
        model.eval()
    return model


def single_output(output: object, model: nn.Module) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"kiln.deploy engines return one tensor: the model must return a single tensor. "
            f"Received: {type(output).__name__} from {type(model).__name__}."
        )
    return output
