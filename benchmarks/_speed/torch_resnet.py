"""ResNet-50 v1.5 in plain torch.nn (torchvision's layout, without depending on torchvision).

v1.5: the stride of a downsampling bottleneck sits on its 3x3 convolution, not its first 1x1.
25,557,032 parameters for 1,000 classes, as torchvision's ``resnet50()``.
"""

from __future__ import annotations

from torch import Tensor, nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            conv_bn(width, cout, 1),
        )  # fmt: skip
        downsample = stride != 1 or cin != cout
        self.shortcut = conv_bn(cin, cout, 1, stride) if downsample else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def resnet50(num_classes: int = 1000) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
    ]  # fmt: skip
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)
