"""mnist(full/path) and fashion_mnist: search order, IDX layouts, download, offline errors."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from kiln.data import _datasets, datasets
from kiln.data._idx import write_idx
from kiln.data._idx_source import locate

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
ROLES = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")


def _fake_arrays(n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }


def _write_set(folder: Path, arrays: dict, *, compress: bool = True, dotted: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        stem, kind = role.rsplit("-", 1)
        name = f"{stem}.{kind}-ubyte" if dotted else f"{role}-ubyte"
        write_idx(folder / (name + (".gz" if compress else "")), array, compress=compress)


def _assert_matches(result, arrays: dict) -> None:
    (x_train, y_train), (x_test, y_test) = result
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        images = arrays[f"{split}-images-idx3"]
        assert x.shape == (len(images), 1, 28, 28) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        torch.testing.assert_close(x[:, 0] * 255, torch.from_numpy(images).float())
        assert y.tolist() == arrays[f"{split}-labels-idx1"].tolist()


@pytest.mark.parametrize(("compress", "dotted"), [(False, False), (True, False), (False, True)])
def test_mnist_from_path(isolated: Path, compress: bool, dotted: bool) -> None:
    arrays = _fake_arrays()
    _write_set(isolated / "mine", arrays, compress=compress, dotted=dotted)
    _assert_matches(datasets.mnist(isolated / "mine"), arrays)


def test_search_order_kiln_data_then_home_then_system(isolated, monkeypatch) -> None:
    home_set, system_set, data_set = (_fake_arrays(seed=s) for s in (1, 2, 3))
    _write_set(isolated / "system" / "mnist", system_set)
    _assert_matches(datasets.mnist(full=True), system_set)
    _write_set(isolated / "home" / ".kiln" / "datasets" / "mnist", home_set, compress=False)
    _assert_matches(datasets.mnist(full=True), home_set)
    monkeypatch.setenv("KILN_DATA", str(isolated / "root"))
    _write_set(isolated / "root" / "mnist", data_set)
    _assert_matches(datasets.mnist(full=True), data_set)


def test_incomplete_folder_is_skipped_and_reported(isolated: Path) -> None:
    arrays = _fake_arrays()
    _write_set(isolated / "system" / "mnist", arrays)
    home = isolated / "home" / ".kiln" / "datasets" / "mnist"
    _write_set(home, {k: v for k, v in arrays.items() if k.startswith("train")})
    _assert_matches(datasets.mnist(full=True), arrays)
    (isolated / "system" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"\(has 2 of 4 files\)"):
        datasets.mnist(full=True)


def test_offline_error_names_every_option(isolated: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        datasets.mnist(full=True)
    assert isinstance(info.value, datasets.DatasetNotFoundError)
    message = str(info.value)
    for fragment in (
        "KILN_OFFLINE is set",
        *(f"{role}-ubyte" for role in ROLES),
        str(isolated / "home" / ".kiln" / "datasets" / "mnist"),
        str(isolated / "system" / "mnist"),
        'kiln.datasets.mnist(path="/path/to/mnist")',
        "put them in one of the searched folders",
        "set KILN_DATA",
        "unset KILN_OFFLINE",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "bundled with kiln, offline: kiln.datasets.mnist()",
    ):
        assert fragment in message


def test_fashion_offline_error_names_apt(isolated: Path, monkeypatch) -> None:
    monkeypatch.delenv("KILN_OFFLINE")
    monkeypatch.setenv("KILN_DATA", str(isolated / "root"))
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.fashion_mnist(download=False)
    message = str(info.value)
    assert "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(isolated / "root" / "fashion-mnist") in message
    assert "kiln.datasets.fashion_mnist(path=" in message
    assert "bundled" not in message


def test_path_without_files_says_what_is_there(isolated: Path) -> None:
    folder = isolated / "partial"
    _write_set(folder, {"train-labels-idx1": np.zeros(3, np.uint8)})
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.mnist(folder)
    assert str(folder) in str(info.value) and "train-labels-idx1-ubyte.gz" in str(info.value)


def test_bad_labels_are_rejected_with_the_path(isolated: Path) -> None:
    arrays = _fake_arrays()
    arrays["t10k-labels-idx1"] = arrays["t10k-labels-idx1"][:-1]
    _write_set(isolated / "mine", arrays)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz.*shape \(20,\)"):
        datasets.mnist(isolated / "mine")


def _mirror(folder: Path, arrays: dict) -> tuple[str, dict[str, str]]:
    folder.mkdir(parents=True)
    md5 = {}
    for role, array in arrays.items():
        write_idx(folder / f"{role}-ubyte.gz", array, compress=True)
        md5[role] = hashlib.md5((folder / f"{role}-ubyte.gz").read_bytes()).hexdigest()
    return folder.as_uri(), md5


def test_download_from_the_first_intact_mirror(isolated: Path, monkeypatch) -> None:
    monkeypatch.delenv("KILN_OFFLINE")
    good, bad = _fake_arrays(seed=5), _fake_arrays(seed=6)
    good_uri, md5 = _mirror(isolated / "good", good)
    bad_uri, _ = _mirror(isolated / "bad", bad)  # serves files whose md5 is wrong
    missing_uri = (isolated / "missing").as_uri()
    source = dataclasses.replace(_datasets.MNIST, md5=md5, mirrors=(missing_uri, bad_uri, good_uri))
    monkeypatch.setattr(_datasets, "MNIST", source)
    _assert_matches(datasets.mnist(full=True), good)
    target = isolated / "home" / ".kiln" / "datasets" / "mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{r}-ubyte.gz" for r in ROLES)
    monkeypatch.setenv("KILN_OFFLINE", "1")  # now found on disk, no download needed
    _assert_matches(datasets.mnist(full=True), good)


def test_download_failure_lists_each_mirror(isolated: Path, monkeypatch) -> None:
    monkeypatch.delenv("KILN_OFFLINE")
    bad_uri, _ = _mirror(isolated / "bad", _fake_arrays())
    source = dataclasses.replace(_datasets.MNIST, mirrors=(bad_uri,))
    monkeypatch.setattr(_datasets, "MNIST", source)
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.mnist(full=True)
    assert "the download failed" in str(info.value)
    assert f"{bad_uri}/train-images-idx3-ubyte.gz: md5" in str(info.value)
    target = isolated / "home" / ".kiln" / "datasets" / "mnist"
    assert list(target.iterdir()) == []  # no partial or unverified file left behind


@pytest.fixture(scope="module")
def fashion():
    if not (DEBIAN_FASHION / "train-labels-idx1-ubyte.gz").exists():
        pytest.skip(f"{DEBIAN_FASHION} is absent (apt-get install dataset-fashion-mnist)")
    return datasets.fashion_mnist(DEBIAN_FASHION, download=False)


def test_debian_fashion_mnist_sizes_and_histograms(fashion) -> None:
    (x_train, y_train), (x_test, y_test) = fashion
    assert x_train.shape == (60_000, 1, 28, 28) and x_test.shape == (10_000, 1, 28, 28)
    assert y_train.bincount().tolist() == [6000] * 10
    assert y_test.bincount().tolist() == [1000] * 10
    assert x_train.dtype == torch.float32 and 0 <= x_train.min() < x_train.max() <= 1
    assert len(datasets.FASHION_MNIST_CLASSES) == 10
    assert datasets.FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_debian_fashion_mnist_matches_upstream_reader(fashion) -> None:
    # the oracle: utils/mnist_reader.py of the Fashion-MNIST repo, as Debian ships it
    (_, y_train), (x_test, _) = fashion
    with gzip.open(DEBIAN_FASHION / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(DEBIAN_FASHION / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    pixels = (x_test.reshape(-1, 784) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(pixels, images)
    np.testing.assert_array_equal(y_train.numpy(), labels)


def test_fashion_found_in_the_debian_folder_by_default(monkeypatch, tmp_path: Path) -> None:
    if not DEBIAN_FASHION.exists():
        pytest.skip(f"{DEBIAN_FASHION} is absent")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KILN_DATA", raising=False)
    monkeypatch.setenv("KILN_OFFLINE", "1")
    assert locate(_datasets.FASHION_MNIST, None, download=False) == DEBIAN_FASHION
