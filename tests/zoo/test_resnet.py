"""The zoo's ResNets against torchvision's: sizes, layout, outputs, initialization."""

from __future__ import annotations

import math

import pytest
import torch

import kiln
from kiln.zoo import create_model

from ._torchvision_resnet import BasicBlock, Bottleneck, ResNet, torchvision_key

TORCHVISION_PARAMS = {  # sum(p.numel() for p in torchvision.models.resnetXX().parameters())
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
}


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvisions(name: str) -> None:
    model = create_model(name, image_size=32)  # the count does not depend on the image size
    assert model.count_params() == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize(
    ("name", "block", "layers"),
    [("resnet18", BasicBlock, [2, 2, 2, 2]), ("resnet50", Bottleneck, [3, 4, 6, 3])],
)
def test_same_outputs_as_torchvision_with_the_same_weights(
    name: str, block: type, layers: list[int], device: torch.device
) -> None:
    model = create_model(name, num_classes=7, image_size=45).to(device)  # odd: padding shows
    ref = ResNet(block, layers, num_classes=7).to(device)
    weights = {torchvision_key(k): v for k, v in model.state_dict().items()}
    ref.load_state_dict(weights)  # strict: same names and shapes, one for one
    x = torch.randn(3, 3, 45, 45, device=device)
    for training in (True, False):  # batch statistics, then the updated running ones
        model.train(training), ref.train(training)
        torch.testing.assert_close(model(x), ref(x))
    ours, theirs = (
        (model.layer4_1_bn2, ref.layer4[1].bn2)
        if name == "resnet18"
        else (model.layer4_2_bn3, ref.layer4[2].bn3)
    )
    assert torch.equal(ours.running_mean, theirs.running_mean)


def test_resnet50_at_224_has_torchvisions_stage_sizes() -> None:
    model = create_model("resnet50").eval()
    sizes: dict[str, tuple[int, ...]] = {}
    for name in ("conv1", "maxpool", "layer1_2_relu", "layer2_3_relu", "layer3_5_relu"):
        module = getattr(model, name)
        module.register_forward_hook(lambda m, i, o, name=name: sizes.update({name: o.shape}))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert sizes == {
        "conv1": (1, 64, 112, 112),
        "maxpool": (1, 64, 56, 56),
        "layer1_2_relu": (1, 256, 56, 56),
        "layer2_3_relu": (1, 512, 28, 28),
        "layer3_5_relu": (1, 1024, 14, 14),
    }


def test_initialization_is_torchvisions() -> None:
    model = create_model("resnet50", image_size=32)
    conv = model.layer3_0_conv2.weight  # (256, 256, 3, 3): fan_out = 256 * 9
    assert abs(conv.std().item() / math.sqrt(2 / (256 * 9)) - 1) < 0.02
    assert conv.abs().max() > 3.5 * math.sqrt(2 / (256 * 9))  # a normal, not truncated at 2 std
    assert torch.equal(model.layer3_0_bn3.weight, torch.ones(1024))
    assert model.fc.weight.abs().max() <= 1 / math.sqrt(2048)  # nn.Linear's U(+-1/sqrt(fan_in))
    zeroed = create_model("resnet18", image_size=32, zero_init_residual=True)
    for name, module in zeroed.named_children():
        if isinstance(module, kiln.layers.BatchNorm):
            last_in_block = name.startswith("layer") and name.endswith("_bn2")
            assert bool(module.weight.eq(0).all()) == last_in_block, name


def test_trained_residual_graph_survives_save_and_load(tmp_path) -> None:
    model = create_model("resnet18", num_classes=5, image_size=32)
    model(torch.randn(8, 3, 32, 32))  # training mode: BatchNorm running statistics move
    model.save(tmp_path / "r18.kiln")
    loaded = kiln.load_model(tmp_path / "r18.kiln").eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
    assert [n for n, _ in loaded.named_children()][:6] == [
        "conv1", "bn1", "relu1", "maxpool", "layer1_0_conv1", "layer1_0_bn1",
    ]  # fmt: skip
