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


def test_random_flip_gives_each_sample_exactly_one_of_its_flips(device):
    x = torch.rand(32, 2, 5, 6, device=device)  # random values: the four flips all differ
    flips = {
        "horizontal": [(), (-1,)],
        "vertical": [(), (-2,)],
        "horizontal_and_vertical": [(), (-1,), (-2,), (-1, -2)],
    }
    for mode, candidates in flips.items():
        out = L.RandomFlip(mode)(x)
        seen = set()
        for i in range(len(x)):
            matches = [d for d in candidates if torch.equal(out[i], x[i].flip(d) if d else x[i])]
            assert len(matches) == 1, (mode, i)
            seen.add(matches[0])
        assert seen == set(candidates), mode  # 32 samples: every flip shows up


def test_random_flip_is_identity_in_eval_and_checks_its_mode(device):
    x = torch.rand(4, 3, 8, 8, device=device)
    assert L.RandomFlip().eval()(x) is x
    with pytest.raises(ValueError, match="Received: mode='diagonal'"):
        L.RandomFlip("diagonal")


def test_random_crop_takes_one_window_of_the_padded_image_per_sample(device):
    layer = L.RandomCrop(6, 5, padding=(1, 2))
    x = torch.rand(24, 3, 7, 6, device=device) + 0.1  # no zeros: the window is identifiable
    out = layer(x)
    assert out.shape == (24, 3, 6, 5)
    padded = F.pad(x, (2, 2, 1, 1))  # 9 x 10: tops 0..3, lefts 0..5
    seen = set()
    for i in range(len(x)):
        matches = [
            (t, left)
            for t in range(4)
            for left in range(6)
            if torch.equal(out[i], padded[i, :, t : t + 6, left : left + 5])
        ]
        assert len(matches) == 1, i
        seen.add(matches[0])
    assert len(seen) > 5


def test_random_crop_in_eval_is_the_center_crop(device):
    x = torch.rand(2, 3, 9, 8, device=device)
    assert torch.equal(L.RandomCrop(5, 4).eval()(x), x[:, :, 2:7, 2:6])
    assert torch.equal(L.RandomCrop(9, 8, padding=4).eval()(x), x)  # CIFAR-style: identity
    with pytest.raises(ValueError, match=r"at least 10x8.*\(2, 3, 9, 8\)"):
        L.RandomCrop(10, 8).eval()(x)
    with pytest.raises(ValueError, match="Received: height=0"):
        L.RandomCrop(0, 3)


def test_augmenting_model_saves_and_loads_with_identical_eval_outputs(tmp_path):
    import kiln

    norm = L.Normalization()
    norm.adapt(torch.rand(64, 3, 12, 12) * 4 + 1)
    model = kiln.Sequential(
        [kiln.Input((3, 12, 12)), L.RandomFlip("horizontal"), L.RandomCrop(10, 10, padding=2)],
        [norm, L.Conv2D(4, 3), L.GlobalAvgPool2D()],
    )
    x = torch.rand(5, 3, 12, 12)
    model.save(tmp_path / "aug.kiln")
    loaded = kiln.load_model(tmp_path / "aug.kiln").eval()
    assert torch.equal(loaded(x), model.eval()(x))
    assert torch.equal(loaded.state_dict()["2.mean"], norm.mean)
