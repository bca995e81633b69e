"""``model.summary()`` and the zero-batch probe that builds lazy layers."""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from kiln.layers._symbolic import _PROBE_SIZES, PROBE_BATCH


def probe(model: Any, input_shape: Any, size: int = _PROBE_SIZES[0]) -> Any:
    """Run a batch of zeros of per-sample ``input_shape`` through ``model`` (eval, no grad)."""
    shapes = _as_shape_list(input_shape)
    dtypes = model._input_dtypes() if hasattr(model, "_input_dtypes") else []
    dtypes = dtypes if len(dtypes) == len(shapes) else [torch.float32] * len(shapes)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    xs = [
        torch.zeros((PROBE_BATCH, *(size if d is None else d for d in s)), dtype=t, device=device)
        for s, t in zip(shapes, dtypes, strict=True)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(*xs)
    finally:
        model.train(was_training)


def _as_shape_list(input_shape: Any) -> list[tuple[int | None, ...]]:
    if isinstance(input_shape, int):
        return [(input_shape,)]
    items = list(input_shape)
    if all(d is None or isinstance(d, int) for d in items):
        return [tuple(items)]
    return [tuple(s) for s in items]


def print_summary(
    model: nn.Module, input_shape: Any = None, console: Console | None = None
) -> None:
    specs = getattr(model, "input_specs", None)
    if input_shape is None and specs is not None:
        input_shape = [s.shape for s in specs]
    rows = _rows(model, input_shape)
    table = Table(title=f'Model: "{getattr(model, "name", None) or _default_name(model)}"')
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    for name, kind, shape, params in rows:
        table.add_row(f"{name} ({kind})", shape, f"{params:,}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    console = console or Console()
    console.print(table)
    console.print(f" Total params: {trainable + frozen:,} ({_bytes(size)})")
    console.print(f" Trainable params: {trainable:,}")
    console.print(f" Non-trainable params: {frozen:,}")


def _rows(model: nn.Module, input_shape: Any) -> list[tuple[str, str, str, int]]:
    children = list(model.named_children())
    unbuilt = [n for n, m in model.named_modules() if getattr(m, "built", True) is False]
    if input_shape is None:
        if unbuilt:
            raise ValueError(
                "The model is not built yet, so its shapes are unknown. Start it with "
                "kiln.Input(shape), call model.build(input_shape), pass summary(input_shape=...), "
                "or call fit() first."
            )
        return [(n, type(m).__name__, "?", _count(m)) for n, m in children]
    calls: list[list[tuple[str, Any]]] = []
    for size in _PROBE_SIZES:
        seen: list[tuple[str, Any]] = []
        hooks = [m.register_forward_hook(_recorder(seen, n)) for n, m in children]
        try:
            probe(model, input_shape, size)
        finally:
            for h in hooks:
                h.remove()
        calls.append(seen)
    modules = dict(children)
    rows, counted = [], set()
    for (name, a), (_, b) in zip(calls[0], calls[1], strict=True):
        params = 0 if name in counted else _count(modules[name])
        counted.add(name)
        rows.append((name, type(modules[name]).__name__, _merge(a, b), params))
    return rows


def _recorder(seen: list[tuple[str, Any]], name: str) -> Any:
    return lambda _module, _inputs, out: seen.append((name, _shape_of(out)))


def _shape_of(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return [_shape_of(o) for o in out]
    return None


def _merge(a: Any, b: Any) -> str:
    """Shapes from the two probes; dims that differ (batch, None inputs) print as None."""
    if isinstance(a, tuple):
        dims = [
            "None" if i == 0 or x != y else str(x)
            for i, (x, y) in enumerate(zip(a, b, strict=True))
        ]
        return "(" + ", ".join(dims) + ")"
    if isinstance(a, list):
        return "[" + ", ".join(_merge(x, y) for x, y in zip(a, b, strict=True)) + "]"
    return "-"


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _default_name(model: nn.Module) -> str:
    from kiln.model._graph import _snake

    return _snake(type(model).__name__)
