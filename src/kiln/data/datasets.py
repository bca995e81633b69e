"""Datasets as torch tensors: ``(x_train, y_train), (x_test, y_test) = mnist()``.

``kiln.datasets`` is this module.
"""

from kiln.data._datasets import FASHION_MNIST_CLASSES, MNIST_CLASSES, fashion_mnist, mnist
from kiln.data._download import DownloadError
from kiln.data._idx import IdxFormatError, read_idx
from kiln.data._idx_source import DatasetNotFoundError
from kiln.data._synthetic import synthetic_images

__all__ = [
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "DatasetNotFoundError",
    "DownloadError",
    "IdxFormatError",
    "fashion_mnist",
    "mnist",
    "read_idx",
    "synthetic_images",
]
