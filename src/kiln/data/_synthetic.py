"""Synthetic images: learnable, deterministic stand-ins for ImageNet-sized data."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Split = tuple[torch.Tensor, torch.Tensor]

_CHUNK = 256  # images generated at a time: 256 x 3 x 224 x 224 float32 is 154 MB of scratch
_PATTERN = 8  # side of each class's low-resolution mean image


def synthetic_images(
    n: int,
    shape: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    seed: int = 0,
    test_n: int | None = None,
) -> tuple[Split, Split]:
    """``(x_train, y_train), (x_test, y_test)`` of random images whose class can be learned.

    Each class has a smooth mean image (an 8x8 random pattern per channel, upsampled
    bilinearly); a sample is its class's mean plus unit Gaussian noise per pixel, so pixels are
    roughly standardized (mean 0, std about 1.2), as after ImageNet normalization. Labels are
    uniform over ``num_classes``; ``x`` is float32 of shape ``(n, *shape)``, ``y`` int64.

    ``test_n`` defaults to ``n // 5`` (at least 1). The same ``seed`` gives the same data, and
    the training set does not depend on ``test_n``. Memory is the result only (4 bytes per
    value: 2,560 images of 3x224x224 take 1.5 GB, 256 take 154 MB); images are made in chunks
    of 256 from a ``torch.Generator``, about 1 s per thousand 224x224 images on one CPU core.
    """
    _check(n, shape, num_classes, test_n)
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, shape[0], _PATTERN, _PATTERN, generator=generator)
    train = _split(n, shape, patterns, generator)
    test = _split(max(n // 5, 1) if test_n is None else test_n, shape, patterns, generator)
    return train, test


def _split(
    n: int, shape: tuple[int, int, int], patterns: torch.Tensor, generator: torch.Generator
) -> Split:
    y = torch.randint(0, len(patterns), (n,), generator=generator)
    x = torch.empty((n, *shape))
    rows, cols = _upsampler(shape[1]), _upsampler(shape[2]).T
    for start in range(0, n, _CHUNK):
        chunk = x[start : start + _CHUNK]
        torch.randn(chunk.shape, generator=generator, out=chunk)
        chunk += rows @ patterns[y[start : start + _CHUNK]] @ cols  # bilinear, as 2 matmuls
    return x, y


def _upsampler(size: int) -> torch.Tensor:
    """The (size, 8) matrix of linear interpolation from 8 points to ``size`` (half-pixel)."""
    eye = torch.eye(_PATTERN)[None]
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T


def _check(n: int, shape: tuple[int, ...], num_classes: int, test_n: int | None) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"synthetic_images expects n to be a positive int. Received: n={n!r}")
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            "synthetic_images expects shape to be (channels, height, width) of positive ints. "
            f"Received: shape={shape!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"synthetic_images expects num_classes >= 1. Received: num_classes={num_classes!r}"
        )
    if test_n is not None and (not isinstance(test_n, int) or test_n < 0):
        raise ValueError(
            f"synthetic_images expects test_n to be an int >= 0. Received: test_n={test_n!r}"
        )
