"""Convolution + bias (+ residual add) + ReLU as one cuDNN call, in a captured (FX) graph.

After BatchNorm folding, a ResNet's convolutions each have a bias and are followed by a ReLU,
some by a residual add first: Inductor runs every convolution through cuDNN and then its bias,
add and ReLU as a Triton kernel of their own, about two kernels per convolution. At batch 1
each kernel is a few microseconds and the gaps between them count. cuDNN runs
``relu(conv(x, w) + bias + z)`` as one kernel: ``aten.cudnn_convolution_relu`` and
``aten.cudnn_convolution_add_relu`` (TorchScript's frozen-graph optimizations used them). This
pass rewrites

- ``relu(conv(x, w, b))`` to ``cudnn_convolution_relu(x, w, b)``;
- ``relu(conv(x, w, b) + z)`` to ``cudnn_convolution_add_relu(x, w, z, 1, b)``, where ``z`` is
  the shortcut; when ``z`` is itself a convolution with a bias used only here (a downsampling
  shortcut), its bias joins ``b`` and that convolution runs without one.

The two operators have CUDA kernels only, and torch ships no shape functions for them: this
module registers those (``Meta`` kernels computing the convolution's output) so that Inductor
and ``torch.export`` can trace the rewritten graph, here and in the package build workers. The
registration is process-wide and only adds what torch lacks. AOTInductor has no C shim for
them and calls them through torch's dispatcher from the package (its "proxy executor").
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch import fx, nn

from kiln.deploy._passes import Pass, copy_module, graph_constant

aten = torch.ops.aten
# torchvision-style modules (``nn.ReLU(inplace=True)``, ``out += identity``) export in-place ops
RELUS = {aten.relu.default, aten.relu_.default}
ADDS = {aten.add.Tensor, aten.add_.Tensor}
CONV_ARGS = ("x", "w", "b", "stride", "padding", "dilation", "groups")
CONV_DEFAULTS = (None, None, None, [1, 1], [0, 0], [1, 1], 1)


class FuseConvReLU(Pass):
    """2-D convolution + bias (+ add) + ReLU -> one cuDNN call, in every FX graph in the module.

    CUDA only: the fused operators have no CPU kernels. ``one_by_one=False`` leaves 1x1
    convolutions to Inductor, which can run them as matrix products with the bias and ReLU
    fused in (``conv_1x1_as_mm`` under max-autotune). An experiment: at batch 1, autotuned,
    ResNet-50 ran 0.426 ms that way against 0.376 ms with every 1x1 fused (H200, 2026-11-28).
    """

    name = "fuse_conv_relu"
    tolerance = 1e-3  # cuDNN's fused kernels accumulate and round in their own order
    optional = True  # where cuDNN has no fused kernel for a shape or dtype, run without it

    def __init__(self, one_by_one: bool = True) -> None:
        self.one_by_one = one_by_one
        self.fused = 0
        self.with_add = 0

    def apply(self, module: nn.Module) -> nn.Module:
        register_shapes()
        module = copy_module(module)
        for sub in module.modules():
            if isinstance(sub, fx.GraphModule):
                fused, with_add = fuse_graph(sub, self.one_by_one)
                self.fused += fused
                self.with_add += with_add
        return module

    def describe(self) -> dict[str, Any]:
        return {"fused": self.fused, "with_add": self.with_add}


def fuse_graph(gm: fx.GraphModule, one_by_one: bool = True) -> tuple[int, int]:
    """Rewrite ``gm`` in place; returns (convolutions fused, of which with a residual add).
    ``one_by_one=False`` leaves 1x1 convolutions as they are."""
    fused = with_add = 0
    for relu in list(gm.graph.nodes):
        if relu.op != "call_function" or relu.target not in RELUS:
            continue
        match = _match(relu)
        if match is None:
            continue
        conv, add, z = match
        parts = conv_parts(conv)
        assert parts is not None  # _match checked it
        if not one_by_one and _kernel_size(gm, parts["w"]) == (1, 1):
            continue
        bias = _join_shortcut_bias(gm, conv, parts["b"], z, f"_kiln_fused_bias_{fused}")
        common = (parts["stride"], parts["padding"], parts["dilation"], parts["groups"])
        with gm.graph.inserting_before(relu):
            if z is None:
                args: tuple[Any, ...] = (parts["x"], parts["w"], bias, *common)
                new = gm.graph.call_function(aten.cudnn_convolution_relu.default, args)
            else:
                args = (parts["x"], parts["w"], z, 1.0, bias, *common)
                new = gm.graph.call_function(aten.cudnn_convolution_add_relu.default, args)
                with_add += 1
        new.meta.update(relu.meta)  # its value's shape, for later matches (z) and Inductor
        relu.replace_all_uses_with(new)
        for node in (relu, add, conv):
            if node is not None:
                gm.graph.erase_node(node)
        fused += 1
    if fused:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return fused, with_add


def conv_parts(node: object) -> dict[str, Any] | None:
    """A 2-D ``aten.conv2d``'s arguments, defaults filled in; None for any other node."""
    if not (isinstance(node, fx.Node) and node.op == "call_function"
            and node.target is aten.conv2d.default):  # fmt: skip
        return None
    parts: dict[str, Any] = dict(zip(CONV_ARGS, CONV_DEFAULTS))
    parts.update(zip(CONV_ARGS, node.args))
    parts.update(node.kwargs)
    weight = parts["w"].meta.get("val") if isinstance(parts["w"], fx.Node) else None
    if weight is not None and weight.dim() != 4:
        return None
    return parts


def _match(relu: fx.Node) -> tuple[fx.Node, fx.Node | None, fx.Node | None] | None:
    """(conv, add or None, the added tensor or None) when ``relu``'s input can fuse."""
    inner = relu.args[0]
    if not isinstance(inner, fx.Node) or len(inner.users) != 1:
        return None
    if conv_parts(inner) is not None:
        return inner, None, None
    if inner.op != "call_function" or inner.target not in ADDS or inner.kwargs:
        return None
    operands = [a for a in inner.args if isinstance(a, fx.Node)]
    if len(operands) != 2 or len(inner.args) != 2:
        return None
    # ``out += z`` (add_) writes into its first operand: only a convolution there may go
    orders = [operands] if inner.target is aten.add_.Tensor else [operands, operands[::-1]]
    for conv, z in orders:
        if conv_parts(conv) is not None and len(conv.users) == 1 and _same_shape(conv, z):
            return conv, inner, z
    return None


def _kernel_size(gm: fx.GraphModule, weight: Any) -> tuple[int, ...] | None:
    """A convolution weight's spatial size: from the node's traced value, or, for the constants
    a pass put in (BatchNorm folding's weights carry no traced value), the tensor itself."""
    if not isinstance(weight, fx.Node):
        return None
    value = weight.meta.get("val")
    if value is None and _constant(weight):
        value = graph_constant(gm, weight.target)
    return tuple(value.shape[2:]) if value is not None else None


def _same_shape(a: fx.Node, b: fx.Node) -> bool:
    """Whether the add needs no broadcasting (cuDNN adds ``z`` element for element)."""
    va, vb = a.meta.get("val"), b.meta.get("val")
    return va is not None and vb is not None and va.shape == vb.shape and va.dtype == vb.dtype


def _join_shortcut_bias(gm: fx.GraphModule, conv: fx.Node, bias: Any, z: fx.Node | None,
                        name: str) -> Any:  # fmt: skip
    """``bias``, or, when ``z`` is a convolution with a constant bias used only by this add,
    a new constant ``bias + z's bias`` (and ``z`` loses its bias)."""
    other = conv_parts(z)
    if z is None or other is None or len(z.users) != 1:
        return bias
    if not (_constant(bias) and _constant(other["b"])):
        return bias
    joined = graph_constant(gm, bias.target) + graph_constant(gm, other["b"].target)
    gm.register_buffer(name, joined)
    with gm.graph.inserting_before(conv):
        node = gm.graph.get_attr(name)
    z.args = (other["x"], other["w"], None, other["stride"], other["padding"],
              other["dilation"], other["groups"])  # fmt: skip
    z.kwargs = {}
    return node


def _constant(node: object) -> bool:
    return isinstance(node, fx.Node) and node.op == "get_attr"


_registered: list[torch.library.Library] = []


class _ProxyNotice(logging.Filter):
    """Drops Inductor's warning, per call site, that AOTInductor reaches these two operators
    through its dispatcher (they have no C shim): it is how they run, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("cudnn_convolution" in message and "c-shim" in message)


def register_shapes() -> None:
    """Meta kernels for the two fused operators (once per process; none if torch has them)."""
    if _registered:
        return
    logging.getLogger("torch._inductor.ir").addFilter(_ProxyNotice())
    library = torch.library.Library("aten", "IMPL")
    for name, kernel in (("cudnn_convolution_relu", _relu_shape),
                         ("cudnn_convolution_add_relu", _add_relu_shape)):  # fmt: skip
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", "Meta"):
            continue
        library.impl(name, kernel, "Meta")
    _registered.append(library)  # a Library unregisters its kernels when collected


def register_operators() -> None:
    """What a program or package built by ``optimize`` may call: the Meta kernels above, and
    ``kiln::conv2d_b1`` (``kiln.deploy._conv_b1``) where Triton is installed."""
    register_shapes()
    with contextlib.suppress(ImportError):  # no Triton: no program here uses the operator
        import kiln.deploy._conv_b1  # noqa: F401  (registers the operator)


def _relu_shape(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: list[int], padding: list[int], dilation: list[int],
                groups: int) -> torch.Tensor:  # fmt: skip
    from torch._prims_common import suggest_memory_format

    out = aten.convolution(x, weight, None, stride, padding, dilation, False, [0, 0], groups)
    # cuDNN's output is channels_last when either operand is (cudnn_conv_suggest_memory_format)
    if torch.channels_last in (suggest_memory_format(x), suggest_memory_format(weight)):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def _add_relu_shape(x: torch.Tensor, weight: torch.Tensor, z: torch.Tensor, alpha: Any,
                    bias: torch.Tensor | None, stride: list[int], padding: list[int],
                    dilation: list[int], groups: int) -> torch.Tensor:  # fmt: skip
    return _relu_shape(x, weight, bias, stride, padding, dilation, groups)
