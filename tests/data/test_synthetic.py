"""synthetic_images: shapes, determinism, and a nearest-class-mean oracle that it is learnable."""

from __future__ import annotations

import pytest
import torch

from kiln import datasets


def test_shapes_dtypes_and_default_test_size() -> None:
    (x, y), (xt, yt) = datasets.synthetic_images(300, shape=(2, 20, 12), num_classes=7)
    assert x.shape == (300, 2, 20, 12) and x.dtype == torch.float32
    assert xt.shape == (60, 2, 20, 12) and y.dtype == yt.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) == 6 and torch.isfinite(x).all()
    assert abs(x.mean().item()) < 0.1 and 1.0 < x.std().item() < 1.5  # roughly standardized


def test_deterministic_per_seed_and_training_set_independent_of_test_n() -> None:
    (x, y), (xt, _) = datasets.synthetic_images(40, (3, 16, 16), 5, seed=1)
    (x2, y2), (xt2, _) = datasets.synthetic_images(40, (3, 16, 16), 5, seed=1, test_n=3)
    assert torch.equal(x, x2) and torch.equal(y, y2) and len(xt) == 8 and len(xt2) == 3
    (x3, _), _ = datasets.synthetic_images(40, (3, 16, 16), 5, seed=2)
    assert not torch.equal(x, x3)


def test_chunks_share_the_class_means() -> None:
    (x, y), _ = datasets.synthetic_images(600, (1, 4, 4), 3, test_n=0)  # chunks of 256
    for c in range(3):
        first, rest = x[:256][y[:256] == c], x[256:][y[256:] == c]
        assert (first.mean(0) - rest.mean(0)).abs().max() < 0.5


def test_classes_are_learnable_by_nearest_class_mean() -> None:
    (x, y), (xt, yt) = datasets.synthetic_images(500, (3, 32, 32), 10, test_n=200)
    means = torch.stack([x[y == c].mean(0) for c in range(10)]).flatten(1)
    guess = torch.cdist(xt.flatten(1), means).argmin(1)
    assert (guess == yt).float().mean() > 0.95


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "Received: n=0"),
        ({"n": 4, "shape": (28, 28)}, r"Received: shape=\(28, 28\)"),
        ({"n": 4, "num_classes": 0}, "Received: num_classes=0"),
        ({"n": 4, "test_n": -1}, "Received: test_n=-1"),
    ],
)
def test_errors_echo_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        datasets.synthetic_images(**kwargs)
