"""Optimization passes: small objects that turn a module into a faster one with the same math.

The contract (every pass in ``kiln.deploy`` follows it):

- ``apply(module) -> module`` returns the transformed module. It never mutates the module it
  is given in a way that the caller could see through the original model's parameters: a pass
  that converts weights works on a copy.
- ``optional`` passes (speed only, kiln's own choice) are skipped, with a log line and an
  entry in ``engine.info["skipped"]`` (name and reason), where they fail or go past their
  tolerance; the others raise.
- ``tolerance`` is the relative error (see ``kiln.deploy._check``) the pass may add. ``optimize``
  runs the result on the example after each pass and refuses a pass whose output, compared with
  the original model's, is further off than the sum of the tolerances of the passes so far.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn


class Pass:
    name: str = "pass"
    tolerance: float = 1e-5
    # an optional pass only makes the engine faster: where it fails or strays past its
    # tolerance, optimize skips it (and says so) instead of refusing the model
    optional: bool = False
    # the batch sizes whose graphs it rewrites (None: every size's). optimize applies such
    # passes after the others, to those sizes' graphs only, checked at the smallest of them
    batch_sizes: tuple[int, ...] | None = None

    def apply(self, module: nn.Module) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the pass did, for ``engine.info`` (JSON values)."""
        return {}


class ChannelsLastInput(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.contiguous(memory_format=torch.channels_last))


class ChannelsLast(Pass):
    """NHWC weights and activations for 2-D convolutions (tensor cores read them unpermuted)."""

    name = "channels_last"

    def apply(self, module: nn.Module) -> nn.Module:
        module = copy_module(module).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return ChannelsLastInput(module)


def copy_module(module: nn.Module) -> nn.Module:
    """A deep copy (an exported graph module's copy warns about torch internals: not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return copy.deepcopy(module)


def graph_constant(gm: torch.fx.GraphModule, target: Any) -> torch.Tensor:
    """The tensor behind a ``get_attr`` node's ``target`` (a dotted path)."""
    value: Any = gm
    for part in str(target).split("."):
        value = getattr(value, part)
    return value.detach()


def has_conv2d(module: nn.Module) -> bool:
    """Whether ``module`` runs a 2-D convolution (an ``nn.Conv2d`` or one in an FX graph)."""
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            return True
        graph = getattr(sub, "graph", None)
        if isinstance(graph, torch.fx.Graph) and any(
            (node.op == "call_function" and "conv2d" in str(node.target))
            or (node.target is torch.ops.aten.convolution.default and _is_2d(node))
            for node in graph.nodes
        ):
            return True
    return False


def _is_2d(node: torch.fx.Node) -> bool:
    weight = node.args[1]
    value = weight.meta.get("val") if isinstance(weight, torch.fx.Node) else None
    return value is not None and value.dim() == 4
