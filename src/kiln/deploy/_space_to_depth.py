"""A strided stem convolution on few channels as a stride-1 convolution on more (space-to-depth).

A ResNet's first convolution (7x7, stride 2, 3 input channels) is its slowest kernel at batch 1:
three channels leave cuDNN's tensor-core kernels little to multiply per pixel. Cutting the padded
input into 2x2 cells and stacking each cell's pixels as channels turns it into a 4x4 convolution
with stride 1 on 12 channels (padded with zero channels to a multiple of 8), with the weights
rearranged to match:

    out[o, i, j] = sum over c, a, b of w[o, c, a, b] * x_padded[c, 2i + a, 2j + b]
                 = sum over c, r, s, p, q of w[o, c, 2p + r, 2q + s] * X[4c + 2r + s, i + p, j + q]

where ``X[4c + 2r + s, u, v] = x_padded[c, 2u + r, 2v + s]`` and the kernel is padded with zeros
to an even size. The sums are the same products, so the result differs only by rounding order.
The input's rearrangement is a pure index remap: Inductor fuses it into the kernel that already
converts the input (dtype, channels_last, or an image engine's normalization).

On ResNet-50 (H200, 2026-11-28) the stem's kernel went from 13-16 to 9 us and the batch-1 graph
6.5 us (1.7%) shorter, but batches of 64 and 256 ran 1.3-1.5% slower (the 16-channel 4x4
convolution does 1.7x the multiplications). So the pass rewrites the batch-1 graph only
(``batch_sizes``); ``optimize(..., fuse="triton")`` adds it. It rewrites plain convolutions and
cuDNN's fused convolution + bias + ReLU calls (``FuseConvReLU``'s) alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from kiln.deploy._fuse_conv import conv_parts
from kiln.deploy._passes import Pass, copy_module, graph_constant

aten = torch.ops.aten
CONTIGUOUS = torch.contiguous_format


class SpaceToDepthStem(Pass):
    """Each 2-D convolution with stride 2, at most ``max_channels`` input channels and a kernel
    of at least 3 -> space-to-depth and a stride-1 convolution (see the module's docstring);
    its input channels are padded with zeros to a multiple of ``multiple``."""

    name = "space_to_depth_stem"
    tolerance = 1e-3  # the same products summed in another order (fp16 accumulates in fp32)
    optional = True
    batch_sizes = (1,)  # slower at batch 64 and 256 (see the module's docstring)

    def __init__(self, max_channels: int = 4, multiple: int = 8) -> None:
        self.max_channels, self.multiple = max_channels, multiple
        self.rewritten = 0

    def apply(self, module: nn.Module) -> nn.Module:
        module = copy_module(module)
        for sub in module.modules():
            if isinstance(sub, fx.GraphModule):
                self.rewritten += rewrite_graph(sub, self.max_channels, self.multiple)
        return module

    def describe(self) -> dict[str, Any]:
        return {"rewritten": self.rewritten}


def rewrite_graph(gm: fx.GraphModule, max_channels: int = 4, multiple: int = 8) -> int:
    """Rewrite ``gm``'s matching convolutions in place; returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        parts = _parts(node)
        if parts is None or not _matches(gm, parts, max_channels):
            continue
        _rewrite(gm, node, parts, multiple, f"_kiln_s2d_{count}")
        count += 1
    if count:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return count


def _parts(node: fx.Node) -> dict[str, Any] | None:
    """A plain convolution's or cuDNN's fused convolution + bias + ReLU's arguments (the
    latter with ``fused``); None for any other node."""
    if node.op == "call_function" and node.target is aten.cudnn_convolution_relu.default:
        names = ("x", "w", "b", "stride", "padding", "dilation", "groups")
        return {**dict(zip(names, node.args)), "fused": True}
    parts = conv_parts(node)
    return None if parts is None else {**parts, "fused": False}


def space_to_depth_weight(weight: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """``weight`` (O, C, kh, kw) as (O, 4C padded to ``multiple``, ceil(kh/2), ceil(kw/2)),
    channel ``4c + 2r + s`` holding the taps ``w[:, c, 2p + r, 2q + s]``."""
    out, channels, kh, kw = weight.shape
    even = torch.nn.functional.pad(weight, (0, kw % 2, 0, kh % 2))
    cells = even.reshape(out, channels, (kh + 1) // 2, 2, (kw + 1) // 2, 2)
    stacked = cells.permute(0, 1, 3, 5, 2, 4).reshape(out, 4 * channels, *cells.shape[2:5:2])
    return _pad_channels(stacked, multiple)


def _pad_channels(x: torch.Tensor, multiple: int) -> torch.Tensor:
    extra = -x.shape[1] % multiple
    return torch.nn.functional.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


def _matches(gm: fx.GraphModule, parts: dict[str, Any], max_channels: int) -> bool:
    w, x = parts["w"], parts["x"]
    if not (isinstance(w, fx.Node) and w.op == "get_attr" and isinstance(x, fx.Node)):
        return False
    bias = parts["b"]
    if bias is not None and not (isinstance(bias, fx.Node) and bias.op == "get_attr"):
        return False
    value = x.meta.get("val")
    weight = graph_constant(gm, w.target)
    if value is None or value.dim() != 4 or weight.dim() != 4:
        return False
    return (
        list(parts["stride"]) == [2, 2]
        and list(parts["dilation"]) == [1, 1]
        and parts["groups"] == 1
        and weight.shape[1] <= max_channels
        and min(weight.shape[2:]) >= 3
        and all(isinstance(s, int) for s in value.shape[2:])  # static height and width
    )


def _rewrite(gm: fx.GraphModule, conv: fx.Node, parts: dict[str, Any], multiple: int,
             name: str) -> None:  # fmt: skip
    weight = graph_constant(gm, parts["w"].target)
    height, width = parts["x"].meta["val"].shape[2:]
    kh, kw = weight.shape[2:]
    ph, pw = (list(parts["padding"]) * 2)[:2] if len(parts["padding"]) == 1 else parts["padding"]
    # pad to even sizes: the cells must tile the padded input
    (top, bottom), (left, right) = ((ph, ph + (height + 2 * ph) % 2),
                                    (pw, pw + (width + 2 * pw) % 2))  # fmt: skip
    cells_h, cells_w = (height + top + bottom) // 2, (width + left + right) // 2
    channels = weight.shape[1]
    new_weight = space_to_depth_weight(weight, multiple)
    memory_format = (torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last)
                     and not weight.is_contiguous() else torch.contiguous_format)  # fmt: skip
    gm.register_buffer(f"{name}_weight", new_weight.contiguous(memory_format=memory_format))
    out_h, out_w = (height + 2 * ph - kh) // 2 + 1, (width + 2 * pw - kw) // 2 + 1
    graph = gm.graph
    with graph.inserting_before(conv):
        x = graph.call_function(aten.constant_pad_nd.default,
                                (parts["x"], [left, right, top, bottom], 0.0))  # fmt: skip
        x = graph.call_function(aten.view.default, (x, [-1, channels, cells_h, 2, cells_w, 2]))
        x = graph.call_function(aten.permute.default, (x, [0, 1, 3, 5, 2, 4]))
        x = graph.call_function(aten.clone.default, (x,), {"memory_format": CONTIGUOUS})
        x = graph.call_function(aten.view.default, (x, [-1, 4 * channels, cells_h, cells_w]))
        extra = new_weight.shape[1] - 4 * channels
        if extra:
            x = graph.call_function(aten.constant_pad_nd.default, (x, [0, 0, 0, 0, 0, extra], 0.0))
        x = graph.call_function(aten.clone.default, (x,), {"memory_format": memory_format})
        w = graph.get_attr(f"{name}_weight")
        if parts["fused"]:
            new = graph.call_function(aten.cudnn_convolution_relu.default,
                                      (x, w, parts["b"], [1, 1], [0, 0], [1, 1], 1))  # fmt: skip
        else:
            new = graph.call_function(aten.conv2d.default, (x, w, parts["b"], [1, 1], [0, 0]))
        # an even kernel on an odd padded size leaves one row or column more than before
        if (cells_h - new_weight.shape[2] + 1, cells_w - new_weight.shape[3] + 1) != (out_h, out_w):
            new = graph.call_function(aten.slice.Tensor, (new, 2, 0, out_h))
            new = graph.call_function(aten.slice.Tensor, (new, 3, 0, out_w))
    new.meta.update(conv.meta)
    conv.replace_all_uses_with(new)
    graph.erase_node(conv)
