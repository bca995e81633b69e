"""The functional graph: a traced chain of module calls between ``kiln.Input`` s and outputs.

The graph keeps no module objects and no tensors, only names and references, so a model that
holds it deep-copies, pickles and serializes to JSON as plain data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kiln.layers._symbolic import Node, SymbolicTensor, _symbols

Ref = dict[str, list[int]]  # {"__ref__": [node_index, output_index]}


@dataclass
class InputSpec:
    name: str
    shape: tuple[int | None, ...]  # per sample, no batch dimension
    dtype: str

    def check(self, x: Any) -> None:
        """Raise a clear error when ``x`` does not fit this input."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Input {self.name!r} expects a tensor, received {type(x).__name__}.")
        got = tuple(x.shape[1:])
        if len(got) != len(self.shape) or any(
            d is not None and d != g for d, g in zip(self.shape, got, strict=False)
        ):
            raise ValueError(
                f"Input {self.name!r} expects samples of shape {_fmt(self.shape)} "
                f"(batch shape {_fmt((None, *self.shape))}), received a batch of shape "
                f"{tuple(x.shape)}. Reshape the data or rebuild the model for this shape."
            )
        want_float = self.dtype.startswith(("float", "bfloat"))
        if want_float != x.is_floating_point() or x.dtype == torch.float64:
            hint = (
                "convert with x.float() (and scale uint8 images by 1/255)"
                if want_float
                else "pass integer indices (x.long())"
            )
            raise TypeError(
                f"Input {self.name!r} expects dtype {self.dtype}, received {str(x.dtype)[6:]}: "
                f"{hint}."
            )


def _fmt(shape: tuple[int | None, ...]) -> str:
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


class Graph:
    """Steps ``[(module_name, args, kwargs)]`` in execution order, plus inputs and outputs."""

    def __init__(
        self,
        inputs: list[InputSpec],
        steps: list[dict[str, Any]],
        outputs: Any,
        input_structure: str = "list",
    ) -> None:
        self.inputs = inputs
        self.steps = steps
        self.outputs = outputs
        self.input_structure = input_structure  # "single", "list" or "dict"
        self._free_after = _free_after(steps, outputs)

    @classmethod
    def trace(cls, inputs: Any, outputs: Any) -> tuple[Graph, dict[str, nn.Module]]:
        """Build the graph from symbolic ``inputs``/``outputs``; returns it and its modules."""
        named_inputs, structure = _named_inputs(inputs)
        order = _topological_order(_symbols(outputs))
        index = {node.id: i for i, node in enumerate(order)}
        input_ids = {t.node.id for _, t in named_inputs}
        missing = [n for n in order if n.module is None and n.id not in input_ids]
        if missing:
            raise ValueError(
                "The outputs depend on an Input that is not in `inputs` (an Input of shape "
                f"{tuple(missing[0].kwargs['shape'])}). Pass every Input the outputs use."
            )
        names = _module_names([n.module for n in order if n.module is not None])
        specs = [InputSpec(name, t.shape[1:], str(t.dtype)[6:]) for name, t in named_inputs]
        by_input = {t.node.id: i for i, (_, t) in enumerate(named_inputs)}
        steps: list[dict[str, Any]] = []
        for node in order:
            if node.module is None:
                steps.append({"input": by_input[node.id]})
            else:
                steps.append(
                    {
                        "layer": names[id(node.module)],
                        "args": _template(node.args, index),
                        "kwargs": _template(node.kwargs, index),
                    }
                )
        modules = {names[id(n.module)]: n.module for n in order if n.module is not None}
        return cls(specs, steps, _template(outputs, index), structure), modules

    def run(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        feeds = self._bind(args, kwargs)
        values: list[list[Any] | None] = []
        for i, step in enumerate(self.steps):
            if "input" in step:
                values.append([feeds[step["input"]]])
                continue
            module = getattr(model, step["layer"])
            out = module(*_fill(step["args"], values), **_fill(step["kwargs"], values))
            values.append(list(out) if isinstance(out, (tuple, list)) else [out])
            for done in self._free_after[i]:
                # as eager PyTorch code would: an output nothing later reads is released now,
                # not at the end of the forward (ResNet-50's BatchNorm and Add outputs, held to
                # the end, are a large part of its activations); autograd keeps what backward
                # needs
                values[done] = None
        return _fill(self.outputs, values)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        names = [s.name for s in self.inputs]
        if not kwargs and len(args) == 1 and isinstance(args[0], dict):
            kwargs, args = args[0], ()
        if not kwargs and len(args) == 1 and isinstance(args[0], (list, tuple)) and len(names) > 1:
            args = tuple(args[0])
        if kwargs:
            unknown = sorted(set(kwargs) - set(names))
            if unknown or len(kwargs) != len(names) or args:
                raise ValueError(f"The model's inputs are {names}; received {sorted(kwargs)}.")
            feeds = [kwargs[n] for n in names]
        elif len(args) != len(names):
            raise ValueError(
                f"The model takes {len(names)} input(s) {names}; received {len(args)}."
            )
        else:
            feeds = list(args)
        for spec, x in zip(self.inputs, feeds, strict=True):
            spec.check(x)
        return feeds

    def to_config(self) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in self.inputs
            ],
            "input_structure": self.input_structure,
            "steps": self.steps,
            "outputs": self.outputs,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Graph:
        inputs = [InputSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in config["inputs"]]
        return cls(inputs, config["steps"], config["outputs"], config["input_structure"])


def _named_inputs(inputs: Any) -> tuple[list[tuple[str, SymbolicTensor]], str]:
    if isinstance(inputs, SymbolicTensor):
        return [(inputs.name or "input", inputs)], "single"
    if isinstance(inputs, dict):
        return list(inputs.items()), "dict"
    if isinstance(inputs, (list, tuple)) and all(isinstance(t, SymbolicTensor) for t in inputs):
        return [(t.name or f"input_{i}", t) for i, t in enumerate(inputs)], "list"
    raise TypeError(
        "inputs must be a kiln.Input, a list of them or a dict name -> Input; "
        f"received {type(inputs).__name__}."
    )


def _topological_order(outputs: list[SymbolicTensor]) -> list[Node]:
    order: list[Node] = []
    done: set[int] = set()
    stack: list[tuple[Node, bool]] = [(t.node, False) for t in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if node.id in done:
            continue
        if expanded:
            done.add(node.id)
            order.append(node)
            continue
        stack.append((node, True))
        parents = _symbols(node.args) + _symbols(node.kwargs)
        stack.extend((t.node, False) for t in reversed(parents) if t.node.id not in done)
    return order


def _module_names(modules: list[nn.Module]) -> dict[int, str]:
    names: dict[int, str] = {}
    taken: set[str] = set()
    for module in modules:
        if id(module) in names:
            continue
        base = getattr(module, "name", None) or _snake(type(module).__name__)
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        if getattr(module, "name", None) and name != base:
            raise ValueError(f"Two layers are named {base!r}; layer names must be unique.")
        taken.add(name)
        names[id(module)] = name
    return names


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _template(value: Any, index: dict[int, int]) -> Any:
    if isinstance(value, SymbolicTensor):
        return {"__ref__": [index[value.node.id], value.index]}
    if isinstance(value, (list, tuple)):
        return (
            [_template(v, index) for v in value]
            if isinstance(value, list)
            else {"__tuple__": [_template(v, index) for v in value]}
        )
    if isinstance(value, dict):
        return {k: _template(v, index) for k, v in value.items()}
    return value


def _free_after(steps: list[dict[str, Any]], outputs: Any) -> list[list[int]]:
    """For each step, the earlier steps whose outputs no later step and no output reads."""
    last = {}
    for i, step in enumerate(steps):
        for ref in _refs(step.get("args")) + _refs(step.get("kwargs")):
            last[ref] = i
    kept = set(_refs(outputs))
    free: list[list[int]] = [[] for _ in steps]
    for node, i in last.items():
        if node not in kept:
            free[i].append(node)
    return free


def _refs(template: Any) -> list[int]:
    """The steps a template reads, in order."""
    if isinstance(template, dict):
        if "__ref__" in template:
            return [template["__ref__"][0]]
        return [r for v in template.values() for r in _refs(v)]
    if isinstance(template, list):
        return [r for v in template for r in _refs(v)]
    return []


def _fill(template: Any, values: list[list[Any] | None]) -> Any:
    if isinstance(template, dict):
        if "__ref__" in template:
            node, out = template["__ref__"]
            return values[node][out]  # type: ignore[index]
        if "__tuple__" in template:
            return tuple(_fill(v, values) for v in template["__tuple__"])
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template
