"""Fold eval-mode BatchNorm into the convolution before it, in a captured (FX) graph.

``conv(x, w, b)`` followed by ``batch_norm(., gamma, beta, mean, var, eps)`` equals
``conv(x, w * s, (b - mean) * s + beta)`` with ``s = gamma / sqrt(var + eps)`` per output
channel. The new weights are computed in float64 and stored in the weight's dtype, before any
precision pass rounds them, so folding adds no error of its own beyond float rounding.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn

from kiln.deploy._passes import Pass, copy_module, graph_constant

aten = torch.ops.aten
CONVS = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.convolution.default}
# aten.batch_norm: (input, weight, bias, mean, var, training, momentum, eps, cudnn_enabled)
# _native_batch_norm_legit_no_training: (input, weight, bias, mean, var, momentum, eps) -> tuple
BATCH_NORMS = {aten.batch_norm.default: 7, aten._native_batch_norm_legit_no_training.default: 6}


class FoldBatchNorm(Pass):
    """Conv + eval BatchNorm -> one conv, in every FX graph (``torch.export``'s) in the module."""

    name = "fold_batchnorm"
    tolerance = 1e-5

    def __init__(self) -> None:
        self.folded = 0

    def apply(self, module: nn.Module) -> nn.Module:
        module = copy_module(module)
        for sub in module.modules():
            if isinstance(sub, fx.GraphModule):
                self.folded += _fold_graph(sub)
        return module

    def describe(self) -> dict[str, Any]:
        return {"folded": self.folded}


def _fold_graph(gm: fx.GraphModule) -> int:
    folded = 0
    for bn in list(gm.graph.nodes):
        conv = _foldable(bn)
        if conv is None:
            continue
        _fold(gm, conv, bn, f"_kiln_folded_{folded}")
        folded += 1
    if folded:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return folded


def _foldable(bn: fx.Node) -> fx.Node | None:
    """The convolution that ``bn`` (an eval-mode batch norm) may be folded into, if any."""
    if bn.op != "call_function" or bn.target not in BATCH_NORMS:
        return None
    if bn.target is aten.batch_norm.default and bn.args[5]:  # training=True: batch statistics
        return None
    conv = bn.args[0]
    if not isinstance(conv, fx.Node) or conv.op != "call_function" or conv.target not in CONVS:
        return None
    if len(conv.users) != 1 or (conv.target is aten.convolution.default and conv.args[6]):
        return None  # the conv output is used elsewhere, or it is transposed
    params = [conv.args[1], conv.args[2] if len(conv.args) > 2 else None, *bn.args[1:5]]
    if not all(p is None or (isinstance(p, fx.Node) and p.op == "get_attr") for p in params):
        return None
    if bn.args[3] is None or bn.args[4] is None:  # no running statistics
        return None
    if bn.target is not aten.batch_norm.default and any(
        u.target is not operator.getitem or u.args[1] != 0 for u in bn.users
    ):
        return None
    return conv


def _fold(gm: fx.GraphModule, conv: fx.Node, bn: fx.Node, prefix: str) -> None:
    weight = _tensor(gm, conv.args[1])
    assert weight is not None  # _foldable checked it
    bias = _tensor(gm, conv.args[2] if len(conv.args) > 2 else None)
    gamma, beta, mean, var = (_tensor(gm, a) for a in bn.args[1:5])
    eps = float(bn.args[BATCH_NORMS[bn.target]])  # type: ignore[index,arg-type]
    new_weight, new_bias = folded(weight, bias, gamma, beta, mean, var, eps)
    gm.register_buffer(f"{prefix}_weight", new_weight)
    gm.register_buffer(f"{prefix}_bias", new_bias)
    with gm.graph.inserting_before(conv):
        w_node = gm.graph.get_attr(f"{prefix}_weight")
        b_node = gm.graph.get_attr(f"{prefix}_bias")
    args = list(conv.args)
    args[1] = w_node
    if len(args) > 2:
        args[2] = b_node
    else:
        args.append(b_node)
    conv.args = tuple(args)
    outputs = list(bn.users) if bn.target is not aten.batch_norm.default else [bn]
    for out in outputs:
        out.replace_all_uses_with(conv)
        gm.graph.erase_node(out)
    if bn in gm.graph.nodes:
        gm.graph.erase_node(bn)


def folded(
    weight: torch.Tensor, bias: torch.Tensor | None, gamma: torch.Tensor | None,
    beta: torch.Tensor | None, mean: torch.Tensor | None, var: torch.Tensor | None, eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The weight and bias of ``batch_norm(conv(x, weight, bias))`` as one convolution."""
    assert mean is not None and var is not None
    scale = torch.rsqrt(var.double() + eps)
    if gamma is not None:
        scale = scale * gamma.double()
    shift = -mean.double() * scale
    if bias is not None:
        shift = shift + bias.double() * scale
    if beta is not None:
        shift = shift + beta.double()
    new_weight = weight.double() * scale.reshape(-1, *[1] * (weight.dim() - 1))
    return new_weight.to(weight.dtype), shift.to(weight.dtype)


def _tensor(gm: fx.GraphModule, node: object) -> torch.Tensor | None:
    return graph_constant(gm, node.target) if isinstance(node, fx.Node) else None
