"""One-file model format: safetensors weights, JSON architecture in the safetensors header."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from kiln._version import __version__
from kiln.layers._serialization import is_json

FORMAT = "kiln.model/1"


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    from kiln.model._serialize import module_config

    header = {"format": FORMAT, "kiln_version": __version__, "model": module_config(model)}
    compile_args = getattr(model, "_compile_args", None)
    if compile_args and is_json(compile_args):
        header["compile"] = compile_args
    _atomic_save(
        _tensors(state_dict or model.state_dict()), {"kiln": json.dumps(header)}, Path(path)
    )


def load_model(path: str | os.PathLike[str], compile: bool = True) -> nn.Module:
    """Rebuild a model saved by ``model.save(path)``; no code that built it is needed.

    The model comes back compiled with the saved optimizer/loss/metric names when those were
    names (objects are not saved): call ``compile`` again to train with objects.
    """
    from kiln.model._serialize import module_from_config

    header = _read_header(Path(path))
    model = module_from_config(header["model"])
    load_weights(model, path)
    if compile and "compile" in header and hasattr(model, "compile"):
        model.compile(**header["compile"])
    return model


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    header = {"kiln": json.dumps({"format": FORMAT + "+weights"})}
    _atomic_save(_tensors(model.state_dict()), header, Path(path))


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    path = Path(path)
    _read_header(path, need_model=False)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"The weights in {path} do not fit this model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}. Was it saved from a different architecture?"
        )


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    seen: dict[int, str] = {}
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if hasattr(t, "full_tensor"):  # a sharded parameter (DTensor): gather it, collectively
            t = t.full_tensor()
        # safetensors refuses shared storage (tied weights): store each key's own copy
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        t = t.detach().cpu().contiguous()
        out[key] = t.clone() if ptr in seen and ptr != -1 else t
        seen.setdefault(ptr, key)
    return out


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_header(path: Path, need_model: bool = True) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"No saved model at {str(path)!r}: the file does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(
            f"{path} is not a kiln model file (safetensors could not read it: {e}). "
            "Models are saved with model.save(path)."
        ) from e
    if "kiln" not in metadata:
        if need_model:
            raise ValueError(f"{path} is a safetensors file without a kiln architecture header.")
        return {}
    header = json.loads(metadata["kiln"])
    if need_model and "model" not in header:
        raise ValueError(
            f"{path} holds weights only (save_weights); load them with load_weights()."
        )
    return header
