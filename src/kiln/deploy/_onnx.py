"""``model.onnx``: the model in fp32 for other runtimes, validated in onnxruntime on the CPU.

The ONNX file takes what the engine takes (uint8 NHWC images when built with ``image=``) with a
dynamic batch size; precision is left to the runtime that loads it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim

from kiln._extras import require


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write ``module`` (fp32, on the CPU) to ``path`` through torch.export (dynamo)."""
    require("onnxscript", "deploy")
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes are not ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(path), dynamo=True, external_data=False,
                dynamic_shapes=({0: Dim("batch", min=1)},), input_names=["input"],
                output_names=["output"], verbose=False,
            )  # fmt: skip
    except Exception as e:  # the exporter raises its own error types
        raise RuntimeError(
            f"ONNX export failed ({type(e).__name__}: {e}). Save without it with onnx=False."
        ) from e
    finally:
        quiet.setLevel(level)


def run_onnx(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    """Outputs of the ONNX model at ``path`` in onnxruntime (CPU) for ``inputs``."""
    ort = require("onnxruntime", "deploy")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": inputs.cpu().numpy()})
    return torch.from_numpy(output)
