"""ResNet-18/34/50/101 (He, Zhang, Ren and Sun, 2015) as torchvision builds them.

torchvision's "v1.5" layout: a bottleneck block strides on its 3x3 convolution, not its first
1x1; the shortcut is a strided 1x1 convolution and BatchNorm where the shape changes. Parameter
counts, output sizes at every stage and initialization (convolutions N(0, 2 / fan_out), BatchNorm
weight 1 and bias 0, the classifier as nn.Linear) equal torchvision's. Layer names are
torchvision's module paths with "_" for ".": kiln's ``layer2_0_downsample_0.weight`` is
torchvision's ``layer2.0.downsample.0.weight``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from kiln import layers as L
from kiln.layers import SymbolicTensor
from kiln.model import Input, Model
from kiln.zoo._registry import register_model

Block = Callable[[SymbolicTensor, int, int, str], SymbolicTensor]

RECIPE: dict[str, Any] = dict(
    dataset="synthetic", samples=2560, epochs=2, batch_size=256, schedule="cosine",
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    loss="cross_entropy", metrics=["accuracy"],
    test_kwargs=dict(image_size=64),
)  # fmt: skip


def _conv_bn(
    x: SymbolicTensor, filters: int, kernel: int, stride: int, prefix: str, index: int,
    relu: bool = True,
) -> SymbolicTensor:  # fmt: skip
    """Convolution (no bias, padding kernel // 2 as torchvision), BatchNorm and ReLU, named
    ``{prefix}conv{index}``, ``{prefix}bn{index}``, ``{prefix}relu{index}``."""
    conv = L.Conv2D(
        filters, kernel, strides=stride, padding=kernel // 2, use_bias=False,
        kernel_initializer="kaiming_normal_fan_out", name=f"{prefix}conv{index}",
    )  # fmt: skip
    x = L.BatchNorm(name=f"{prefix}bn{index}")(conv(x))
    return L.Activation("relu", name=f"{prefix}relu{index}")(x) if relu else x


def _shortcut(x: SymbolicTensor, filters: int, stride: int, prefix: str) -> SymbolicTensor:
    """The identity, or a strided 1x1 convolution and BatchNorm where the shape changes."""
    if stride == 1 and x.shape[1] == filters:
        return x
    conv = L.Conv2D(
        filters, 1, strides=stride, use_bias=False, kernel_initializer="kaiming_normal_fan_out",
        name=f"{prefix}downsample_0",
    )  # fmt: skip
    return L.BatchNorm(name=f"{prefix}downsample_1")(conv(x))


def _add_relu(x: SymbolicTensor, shortcut: SymbolicTensor, prefix: str) -> SymbolicTensor:
    return L.Activation("relu", name=f"{prefix}relu")(L.Add(name=f"{prefix}add")([x, shortcut]))


def _basic_block(x: SymbolicTensor, filters: int, stride: int, prefix: str) -> SymbolicTensor:
    """Two 3x3 convolutions (ResNet-18/34); ``filters`` channels out."""
    y = _conv_bn(x, filters, 3, stride, prefix, 1)
    y = _conv_bn(y, filters, 3, 1, prefix, 2, relu=False)
    return _add_relu(y, _shortcut(x, filters, stride, prefix), prefix)


def _bottleneck(x: SymbolicTensor, filters: int, stride: int, prefix: str) -> SymbolicTensor:
    """1x1 down to ``filters``, strided 3x3, 1x1 up to ``4 * filters`` (ResNet-50/101)."""
    y = _conv_bn(x, filters, 1, 1, prefix, 1)
    y = _conv_bn(y, filters, 3, stride, prefix, 2)
    y = _conv_bn(y, 4 * filters, 1, 1, prefix, 3, relu=False)
    return _add_relu(y, _shortcut(x, 4 * filters, stride, prefix), prefix)


def _resnet(
    name: str,
    block: Block,
    layers: tuple[int, int, int, int],
    num_classes: int,
    image_size: int,
    in_channels: int,
    zero_init_residual: bool,
) -> Model:
    inputs = Input((in_channels, image_size, image_size))
    x = _conv_bn(inputs, 64, 7, 2, "", 1)  # 224 -> 112
    x = L.MaxPool2D(3, strides=2, padding=1, name="maxpool")(x)  # -> 56
    for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for i in range(blocks):
            stride = 2 if stage > 1 and i == 0 else 1
            x = block(x, filters, stride, f"layer{stage}_{i}_")
    x = L.GlobalAvgPool2D(name="avgpool")(x)
    fc = L.Dense(num_classes, kernel_initializer="torch", bias_initializer="torch", name="fc")
    model = Model(inputs, fc(x), name=name)
    if zero_init_residual:  # each block starts as the identity (Goyal et al., 2017)
        last = "_bn2" if block is _basic_block else "_bn3"
        for layer_name, layer in model.named_children():
            if isinstance(layer, L.BatchNorm) and layer_name.endswith(last):
                nn.init.zeros_(layer.weight)
    return model


@register_model("resnet18", **RECIPE)
def resnet18(num_classes: int = 1000, image_size: int = 224, in_channels: int = 3,
             zero_init_residual: bool = False) -> Model:  # fmt: skip
    """ResNet-18: basic blocks (2, 2, 2, 2), 11,689,512 parameters, 1.8 GFLOPs at 224."""
    args = (num_classes, image_size, in_channels, zero_init_residual)
    return _resnet("resnet18", _basic_block, (2, 2, 2, 2), *args)


@register_model("resnet34", **RECIPE)
def resnet34(num_classes: int = 1000, image_size: int = 224, in_channels: int = 3,
             zero_init_residual: bool = False) -> Model:  # fmt: skip
    """ResNet-34: basic blocks (3, 4, 6, 3), 21,797,672 parameters, 3.7 GFLOPs at 224."""
    args = (num_classes, image_size, in_channels, zero_init_residual)
    return _resnet("resnet34", _basic_block, (3, 4, 6, 3), *args)


@register_model("resnet50", **RECIPE)
def resnet50(num_classes: int = 1000, image_size: int = 224, in_channels: int = 3,
             zero_init_residual: bool = False) -> Model:  # fmt: skip
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 25,557,032 parameters, 4.1 GFLOPs at 224."""
    args = (num_classes, image_size, in_channels, zero_init_residual)
    return _resnet("resnet50", _bottleneck, (3, 4, 6, 3), *args)


@register_model("resnet101", **RECIPE)
def resnet101(num_classes: int = 1000, image_size: int = 224, in_channels: int = 3,
              zero_init_residual: bool = False) -> Model:  # fmt: skip
    """ResNet-101: bottleneck blocks (3, 4, 23, 3), 44,549,160 parameters, 7.8 GFLOPs at 224."""
    args = (num_classes, image_size, in_channels, zero_init_residual)
    return _resnet("resnet101", _bottleneck, (3, 4, 23, 3), *args)
