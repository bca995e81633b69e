"""Augmentation layers: random per-sample changes in training, the identity in inference.

As Keras's preprocessing layers, they sit at the front of a model, so augmentation runs on the
device with the batch (no CPU worker, no copy) and disappears in ``eval()`` and ``predict``.
Randomness comes from torch's global generator, which the resume checkpoint saves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kiln.layers._base import Layer
from kiln.layers._validate import expect_rank


class RandomTranslation(Layer):
    """Shift each image by a random whole number of pixels, filling with zeros.

    ``height_factor`` and ``width_factor`` are fractions of the image size, as in Keras
    (``0.1`` on a 28-pixel image: up to 2 pixels each way; ``width_factor`` defaults to
    ``height_factor``). Unlike Keras there is no interpolation: shifts are whole pixels, which
    keeps the layer a single gather on the device. Inputs are ``(batch, channels, H, W)``.
    """

    def __init__(
        self, height_factor: float, width_factor: float | None = None, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        width_factor = height_factor if width_factor is None else width_factor
        for arg, value in (("height_factor", height_factor), ("width_factor", width_factor)):
            if not 0.0 <= value < 1.0:
                raise ValueError(
                    f"RandomTranslation's {arg} must be in [0, 1). Received: {arg}={value}"
                )
        self.height_factor, self.width_factor = float(height_factor), float(width_factor)

    def forward(self, x: Tensor) -> Tensor:
        expect_rank(self, x.shape, (4,), "(batch, channels, height, width)")
        if not self.training:
            return x
        n, _, h, w = x.shape
        dy_max, dx_max = int(self.height_factor * h), int(self.width_factor * w)
        if dy_max == 0 and dx_max == 0:
            return x
        dy = torch.randint(-dy_max, dy_max + 1, (n, 1), device=x.device)
        dx = torch.randint(-dx_max, dx_max + 1, (n, 1), device=x.device)
        padded = F.pad(x, (dx_max, dx_max, dy_max, dy_max))
        rows = torch.arange(h, device=x.device) + dy_max - dy  # (n, h): source row per output row
        cols = torch.arange(w, device=x.device) + dx_max - dx  # (n, w)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]
