import pytest
import torch
import torch.nn.functional as F

from kiln import layers as L


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Oracle: ``img`` moved down by dy and right by dx, zeros coming in."""
    h, w = img.shape[-2:]
    padded = F.pad(img, (abs(dx), abs(dx), abs(dy), abs(dy)))
    return padded[..., abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]


def test_random_translation_shifts_each_sample_within_bounds(device):
    layer = L.RandomTranslation(0.1)  # 20x20 images: up to 2 pixels
    x = torch.rand(16, 3, 20, 20, device=device) + 0.1  # no zeros: shifts are identifiable
    out = layer(x)
    seen = set()
    for i in range(16):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[i], _shifted(x[i], dy, dx))
        ]
        assert len(matches) == 1, i
        seen.add(matches[0])
    assert len(seen) > 3  # per-sample randomness, not one shift for the batch


def test_random_translation_is_identity_in_eval_and_seeded(device):
    layer = L.RandomTranslation(0.2, 0.1)
    x = torch.rand(4, 1, 28, 28, device=device)
    assert layer.eval()(x) is x
    layer.train()
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(a, layer(x))


def test_random_translation_config_and_errors():
    layer = L.RandomTranslation(0.1, 0.05)
    assert L.RandomTranslation.from_config(layer.get_config()).width_factor == 0.05
    with pytest.raises(ValueError, match=r"height_factor=1\.5"):
        L.RandomTranslation(1.5)
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        L.RandomTranslation(0.1)(torch.zeros(2, 28, 28))
