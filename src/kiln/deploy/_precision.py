"""fp16 / bf16: weights and activations in half precision, the classifier head in fp32.

The engine still takes and returns fp32 (the casts are fused into the first and last kernels).
The last linear layer before the output (a classifier's logits) keeps fp32 weights and runs on
its half-precision input upcast: rounding the logits themselves to fp16 would cost up to 2.4e-4
relative error on its own, half of a 1e-3 budget, for a layer that is a sliver of the compute.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from kiln.deploy._passes import Pass, copy_module, graph_constant

aten = torch.ops.aten
# ops between the head and the output that do not compute (a head may be reshaped or copied)
PASS_THROUGH = {aten.view.default, aten.reshape.default, aten.flatten.using_ints,
                aten.clone.default, aten.contiguous.default}  # fmt: skip


class Cast(nn.Module):
    """Runs ``module`` in ``dtype``: floating inputs are cast in, floating outputs come out fp32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.to(self.dtype) if x.is_floating_point() else x)
        return y.float() if y.is_floating_point() else y


class Precision(Pass):
    """Weights and activations in fp16 or bf16 (the output's linear head stays fp32)."""

    TOLERANCES = {torch.float16: 5e-3, torch.bfloat16: 3e-2}

    def __init__(self, dtype: torch.dtype, tolerance: float | None = None,
                 fp32_head: bool = True) -> None:  # fmt: skip
        if dtype not in self.TOLERANCES:
            raise ValueError(f"Precision takes torch.float16 or torch.bfloat16. Received: {dtype}")
        self.dtype, self.fp32_head = dtype, fp32_head
        self.name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
        self.tolerance = self.TOLERANCES[dtype] if tolerance is None else tolerance
        self.heads: list[str] = []

    def apply(self, module: nn.Module) -> nn.Module:
        module = copy_module(module)
        graphs = [m for m in module.modules() if isinstance(m, fx.GraphModule)]
        heads = [(gm, node) for gm in graphs if self.fp32_head for node in _heads(gm)]
        kept = [(gm, _constants(gm, node)) for gm, node in heads]  # fp32, before the cast
        module = module.to(self.dtype)
        for (gm, node), (_, constants) in zip(heads, kept):
            for target, value in constants.items():
                _set_constant(gm, target, value)
            _upcast_input(gm, node)
            self.heads.append(next(iter(constants)).rsplit(".", 1)[0])
        return Cast(module, self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"fp32_head": self.heads}


def _heads(gm: fx.GraphModule) -> list[fx.Node]:
    """``aten.linear`` nodes on constant weights whose result is (a view of) a graph output."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    heads = []
    for node in output.all_input_nodes:
        while node.op == "call_function" and node.target in PASS_THROUGH:
            node = node.args[0]
        if (node.op == "call_function" and node.target is aten.linear.default
                and len(node.users) == 1 and _constants(gm, node)):  # fmt: skip
            heads.append(node)
    return heads


def _constants(gm: fx.GraphModule, linear: fx.Node) -> dict[str, torch.Tensor]:
    """The linear's weight and bias by target, copied; empty when either is not a constant."""
    args = [a for a in linear.args[1:3] if a is not None]
    if not all(isinstance(a, fx.Node) and a.op == "get_attr" for a in args):
        return {}
    return {str(a.target): graph_constant(gm, a.target).clone() for a in args}  # type: ignore[union-attr]


def _set_constant(gm: fx.GraphModule, target: str, value: torch.Tensor) -> None:
    owner_name, _, name = target.rpartition(".")
    owner = gm.get_submodule(owner_name) if owner_name else gm
    if name in owner._parameters:
        owner._parameters[name] = nn.Parameter(value, requires_grad=False)
    else:
        owner._buffers[name] = value


def _upcast_input(gm: fx.GraphModule, linear: fx.Node) -> None:
    with gm.graph.inserting_before(linear):
        cast = gm.graph.call_function(aten._to_copy.default, (linear.args[0],),
                                      {"dtype": torch.float32})  # fmt: skip
    linear.args = (cast, *linear.args[1:])
    gm.recompile()
