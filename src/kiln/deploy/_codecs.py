"""Request bodies to input batches, output rows to response bodies.

Binary (``application/octet-stream``) is the fast path: raw little-endian bytes in the engine's
dtype, the shape ``N,d1,d2,...`` in the ``X-Shape`` header or the ``shape`` query parameter
(or left out: N follows from the length). JSON takes ``{"inputs": nested lists}`` or
``{"shape": [...], "data": [flat list]}``. Every malformed body raises ``ValueError`` saying
what the model takes and what came.

Batches and outputs are numpy arrays here: the event loop never calls torch, whose calls
release the GIL and so hand it to the engine's thread for a whole switch interval. (bfloat16,
which numpy lacks, arrives as a torch tensor; bfloat16 outputs leave as float32.)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from kiln.deploy._engine import Engine

NUMPY = {
    torch.uint8: np.uint8, torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32,
    torch.int64: np.int64, torch.bool: np.bool_, torch.float16: np.float16,
    torch.float32: np.float32, torch.float64: np.float64,
}  # fmt: skip
BINARY = "application/octet-stream"
Batch = np.ndarray | torch.Tensor


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def expected(engine: Engine) -> str:
    """What ``engine`` takes, in words: ``(N, 224, 224, 3) uint8``."""
    return f"({', '.join(['N', *map(str, engine.input_shape)])}) {dtype_name(engine.input_dtype)}"


def sample_nbytes(engine: Engine) -> int:
    return int(np.prod(engine.input_shape)) * engine.input_dtype.itemsize


def binary_count(engine: Engine, length: int, shape: str | None) -> int:
    """Samples in a binary body of ``length`` bytes with the ``shape`` header (or none)."""
    size = sample_nbytes(engine)
    if shape is None:
        if length == 0 or length % size:
            raise ValueError(
                f"the model takes {expected(engine)} samples of {size} bytes each; "
                f"the body has {length} bytes, not a positive multiple of {size}. Send the "
                "shape as X-Shape: N,d1,... to check it."
            )
        return length // size
    dims = _parse_shape(shape)
    if tuple(dims[1:]) != engine.input_shape or dims[0] < 1:
        raise ValueError(f"the model takes shape {expected(engine)}. Received: shape {shape!r}.")
    if dims[0] * size != length:
        raise ValueError(
            f"shape {shape!r} of {dtype_name(engine.input_dtype)} needs {dims[0] * size} bytes; "
            f"the body has {length}."
        )
    return dims[0]


def decode_binary(engine: Engine, body: bytearray, shape: str | None, dtype: str | None) -> Batch:
    """A batch viewing ``body`` (no copy): raw bytes in the engine's dtype."""
    if dtype is not None and dtype.strip().lower() != dtype_name(engine.input_dtype):
        raise ValueError(
            f"the model takes {dtype_name(engine.input_dtype)} bytes. Received: "
            f"dtype {dtype!r}; convert on the client."
        )
    n = binary_count(engine, len(body), shape)
    if engine.input_dtype not in NUMPY:  # bfloat16
        return torch.frombuffer(body, dtype=engine.input_dtype).view(n, *engine.input_shape)
    return np.frombuffer(body, dtype=NUMPY[engine.input_dtype]).reshape(n, *engine.input_shape)


def decode_json(engine: Engine, body: bytes | bytearray) -> Batch:
    """A batch from ``{"inputs": [[...]]}`` or ``{"shape": [...], "data": [...]}``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"the body is not valid JSON: {error}") from None
    form = 'a JSON object {"inputs": [[...], ...]} or {"shape": [N, ...], "data": [...]}'
    if isinstance(document, dict) and "inputs" in document:
        array = _numbers(document["inputs"], "inputs")
    elif isinstance(document, dict) and "shape" in document and "data" in document:
        array = _numbers(document["data"], "data")
        shape = document["shape"]
        if not _is_shape(shape) or array.ndim != 1 or array.size != int(np.prod(shape)):
            raise ValueError(
                f"'data' must be a flat list of prod(shape) numbers. Received: "
                f"shape {shape!r} and data of shape {list(array.shape)}."
            )
        array = array.reshape(shape)
    else:
        keys = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"the body must be {form}. Received: {keys}.")
    if tuple(array.shape[1:]) != engine.input_shape or array.ndim == 0 or len(array) == 0:
        raise ValueError(
            f"the model takes inputs of shape {expected(engine)}. "
            f"Received: shape {list(array.shape)}."
        )
    return _to_dtype(engine, array)


def to_numpy(outputs: torch.Tensor) -> np.ndarray:
    """Engine outputs as a numpy array on the CPU (bfloat16 as float32)."""
    if outputs.dtype not in NUMPY:
        outputs = outputs.float()
    return outputs.cpu().numpy()


def encode(outputs: np.ndarray, accept: str, model: str) -> tuple[bytes, str, dict[str, str]]:
    """The response body, media type and headers: binary when ``accept`` asks for it."""
    dtype = "bool" if outputs.dtype == np.bool_ else str(outputs.dtype)
    if BINARY in accept:
        shape = ",".join(map(str, outputs.shape))
        return outputs.tobytes(), BINARY, {"X-Shape": shape, "X-Dtype": dtype}
    document = {"model": model, "shape": list(outputs.shape), "dtype": dtype,
                "outputs": outputs.tolist()}  # fmt: skip
    return json.dumps(document).encode(), "application/json", {}


def decode_outputs(body: bytes, shape: str, dtype: str) -> np.ndarray:
    """A binary response back to an array (the client's side of ``encode``)."""
    flat = np.frombuffer(body, dtype=np.dtype(dtype))
    return flat.reshape(_parse_shape(shape)) if shape else flat


def _parse_shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(
            f"a shape is comma-separated integers such as '8,224,224,3'. Received: {text!r}."
        ) from None
    return dims


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(d, int) and d >= 0 for d in value)


def _numbers(value: Any, key: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise ValueError(f"{key!r} must be a rectangular nested list of numbers: {error}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{key!r} must hold numbers only. Received values of type "
            f"{array.dtype.kind!r} ({array.dtype})."
        )
    return array


def _to_dtype(engine: Engine, array: np.ndarray) -> Batch:
    dtype = engine.input_dtype
    if dtype not in NUMPY:  # bfloat16
        return torch.from_numpy(array.astype(np.float64)).to(dtype)
    if dtype.is_floating_point or dtype == torch.bool:
        return array.astype(NUMPY[dtype])
    info = torch.iinfo(dtype)
    low, high = array.min(), array.max()
    if (array.dtype.kind == "f" and not np.array_equal(array, np.round(array))) or (
        low < info.min or high > info.max
    ):
        raise ValueError(
            f"the model takes {dtype_name(dtype)}: integers in [{info.min}, "
            f"{info.max}]. Received values from {low} to {high} ({array.dtype})."
        )
    return array.astype(NUMPY[dtype])
