"""MNIST and Fashion-MNIST as torch tensors, Keras-style: ``(x_train, y_train), (x_test, y_test)``.

``x`` is float32 of shape (N, 1, 28, 28) scaled to [0, 1]; ``y`` is int64 of shape (N,).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kiln.data._bundled import load_bundled
from kiln.data._idx_source import IdxSource, load_arrays, locate

Split = tuple[torch.Tensor, torch.Tensor]

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MNIST = IdxSource(
    title="MNIST",
    folder="mnist",
    md5={  # as torchvision and the mirrors publish them
        "train-images-idx3": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    system_dirs=(Path("/usr/share/datasets/mnist"),),
    function="kiln.datasets.mnist",
    full_call="kiln.datasets.mnist(full=True)",
    extra_hint="or use the 10,000 digits bundled with kiln, offline: kiln.datasets.mnist()",
)

FASHION_MNIST = IdxSource(
    title="Fashion-MNIST",
    folder="fashion-mnist",
    md5={  # from the Fashion-MNIST README (Debian's package recompresses; its .gz differ)
        "train-images-idx3": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    function="kiln.datasets.fashion_mnist",
    full_call="kiln.datasets.fashion_mnist()",
    extra_hint="on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
    "(installs them in /usr/share/datasets/fashion-mnist)",
)


def mnist(
    path: str | os.PathLike[str] | None = None, *, full: bool = False, download: bool = True
) -> tuple[Split, Split]:
    """MNIST digits: ``(x_train, y_train), (x_test, y_test)``.

    With no arguments: the 10,000 digits bundled with kiln (8,000 train / 2,000 test, a fixed
    stratified split; offline, fast, deterministic; see ``kiln.data._bundled``).

    With ``path=`` (a folder holding the four IDX files, raw or .gz) or ``full=True``: the real
    60,000 / 10,000 MNIST. Without ``path`` the files are searched in ``$KILN_DATA/mnist``,
    ``~/.kiln/datasets/mnist`` and ``/usr/share/datasets/mnist``; if absent and ``download`` is
    true and ``KILN_OFFLINE`` is unset, they are downloaded (md5-checked) into
    ``$KILN_DATA/mnist`` or, without KILN_DATA, ``~/.kiln/datasets/mnist``. Otherwise a
    ``DatasetNotFoundError`` (a ``FileNotFoundError``) lists every way to get them.
    """
    if path is None and not full:
        b = load_bundled()
        return _tensors(b["x_train"], b["y_train"]), _tensors(b["x_test"], b["y_test"])
    return _load(MNIST, path, download)


def fashion_mnist(
    path: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[Split, Split]:
    """Fashion-MNIST (Zalando, MIT): 60,000 / 10,000 clothing images in 10 classes.

    Same conventions and IDX file names as ``mnist(full=True)``; class names are in
    ``FASHION_MNIST_CLASSES``. Searched in ``$KILN_DATA/fashion-mnist``,
    ``~/.kiln/datasets/fashion-mnist`` and ``/usr/share/datasets/fashion-mnist`` (where
    Debian's ``dataset-fashion-mnist`` package puts the four ``.gz`` files), then downloaded
    unless offline. There is no bundled fallback.
    """
    return _load(FASHION_MNIST, path, download)


def _load(
    source: IdxSource, path: str | os.PathLike[str] | None, download: bool
) -> tuple[Split, Split]:
    (x_train, y_train), (x_test, y_test) = load_arrays(source, locate(source, path, download))
    return _tensors(x_train, y_train), _tensors(x_test, y_test)


def _tensors(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))
