"""Symbolic tensors: what ``kiln.Input`` returns and layers return when called on it.

Each symbolic tensor carries a small concrete *probe* (zeros, batch of 2) so that calling any
module on it both builds the module and tells the output shape. Dimensions given as ``None``
are probed at two sizes; output dimensions that differ between the two probes stay ``None``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

PROBE_BATCH = 2
_PROBE_SIZES = (7, 11)
_ids = itertools.count()


@dataclass(eq=False)
class Node:
    """One call of a module in a functional graph: ``outputs = module(*args, **kwargs)``."""

    module: nn.Module | None  # None for an Input
    args: Any  # nested structure of SymbolicTensor and constants
    kwargs: dict[str, Any]
    outputs: list[SymbolicTensor] = field(default_factory=list)
    id: int = field(default_factory=lambda: next(_ids))


class SymbolicTensor:
    """A placeholder for a tensor in a functional model; ``shape[0]`` is the batch (None)."""

    def __init__(self, probes: tuple[torch.Tensor, ...], node: Node, index: int) -> None:
        self.probes = probes
        self.node = node
        self.index = index
        self.name: str | None = None

    @property
    def shape(self) -> tuple[int | None, ...]:
        first = self.probes[0].shape
        last = self.probes[-1].shape
        dims = [a if a == b else None for a, b in zip(first, last, strict=True)]
        return (None, *dims[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.probes[0].dtype

    def __repr__(self) -> str:
        return f"SymbolicTensor(shape={self.shape}, dtype={self.dtype})"


def Input(
    shape: tuple[int | None, ...] | int,
    dtype: str | torch.dtype = "float32",
    name: str | None = None,
) -> SymbolicTensor:
    """A model input of per-sample ``shape`` (no batch dimension), e.g. ``Input((1, 28, 28))``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    for d in shape:
        if d is not None and (not isinstance(d, int) or d <= 0):
            raise ValueError(f"Input shape must hold positive ints or None, received shape={shape}")
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(
            f"Input dtype must name a torch dtype such as 'float32', received {dtype!r}"
        )
    sizes = _PROBE_SIZES if None in shape else _PROBE_SIZES[:1]
    probes = tuple(
        torch.zeros((PROBE_BATCH, *(s if d is None else d for d in shape)), dtype=torch_dtype)
        for s in sizes
    )
    node = Node(module=None, args=(), kwargs={"shape": list(shape), "dtype": str(torch_dtype)[6:]})
    tensor = SymbolicTensor(probes, node, 0)
    tensor.name = name
    node.outputs.append(tensor)
    return tensor


def symbolic_call(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
    """Record ``module(*args, **kwargs)`` in the graph and return symbolic outputs."""
    n_probes = max(len(t.probes) for t in _symbols(args))
    was_training = module.training
    module.eval()  # probes are batches of zeros: batch statistics would be meaningless
    try:
        with torch.no_grad():
            results = [module(*_concrete(args, i), **kwargs) for i in range(n_probes)]
    finally:
        module.train(was_training)
    node = Node(module=module, args=args, kwargs=kwargs)
    multi = isinstance(results[0], (tuple, list))
    per_probe = [list(r) if multi else [r] for r in results]
    for index, probes in enumerate(zip(*per_probe, strict=True)):
        node.outputs.append(SymbolicTensor(tuple(probes), node, index))
    return tuple(node.outputs) if multi else node.outputs[0]


def _symbols(args: Any) -> list[SymbolicTensor]:
    if isinstance(args, SymbolicTensor):
        return [args]
    if isinstance(args, (list, tuple)):
        return [s for a in args for s in _symbols(a)]
    if isinstance(args, dict):
        return [s for a in args.values() for s in _symbols(a)]
    return []


def _concrete(args: Any, i: int) -> Any:
    if isinstance(args, SymbolicTensor):
        return args.probes[min(i, len(args.probes) - 1)]
    if isinstance(args, (list, tuple)):
        return type(args)(_concrete(a, i) for a in args)
    if isinstance(args, dict):
        return {k: _concrete(v, i) for k, v in args.items()}
    return args
