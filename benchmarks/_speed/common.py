"""What every competitor shares: its configuration, a clock, synthetic data, a way to skip.

Nothing here imports torch or JAX at module level: a Keras-JAX worker must never load torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class Skip(Exception):
    """A competitor that cannot run here (no CUDA, no Keras...): reported, not a failure."""


@dataclass(frozen=True)
class Config:
    workload: str  # "lenet" or "resnet50"
    device: str  # "cuda" or "cpu"
    epochs: int
    samples: int  # per epoch
    batch_size: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.samples // self.batch_size)


class Clock:
    """Times one training run: from its creation to the first step done, then each epoch.

    Create it right before building the model, so the first step's time includes moving the
    data, compiling and capturing. ``sync`` waits for the device; ``peak_bytes`` reports the
    memory the run allocated beyond what was allocated when the clock started (the input data,
    when the caller put it on the device beforehand).
    """

    def __init__(self, sync: Callable[[], None], peak_bytes: Callable[[], int | None]) -> None:
        self._sync, self._peak_bytes = sync, peak_bytes
        self.start = time.perf_counter()
        self.first_step_s: float | None = None
        self.first_epoch_s: float | None = None  # from the start to the end of epoch 1
        self.epoch_s: list[float] = []
        self._epoch_start = self.start

    def step_done(self) -> None:
        """Call after every step: syncs once, after the first."""
        if self.first_step_s is None:
            self._sync()
            self.first_step_s = time.perf_counter() - self.start

    def epoch_begin(self) -> None:
        self._epoch_start = time.perf_counter()

    def epoch_end(self) -> None:
        self._sync()
        now = time.perf_counter()
        self.epoch_s.append(now - self._epoch_start)
        if self.first_epoch_s is None:
            self.first_epoch_s = now - self.start

    def result(
        self, steps_per_epoch: int, samples_per_epoch: int, note: str = ""
    ) -> dict[str, Any]:
        return {
            "epoch_s": self.epoch_s,
            "first_step_s": self.first_step_s,
            "first_epoch_s": self.first_epoch_s,
            "peak_bytes": self._peak_bytes(),
            "steps_per_epoch": steps_per_epoch,
            "samples_per_epoch": samples_per_epoch,
            "note": note,
        }


def torch_clock(device: Any) -> Clock:
    """A clock for a torch run on ``device``; peak memory from the CUDA caching allocator."""
    import torch

    if device.type != "cuda":
        return Clock(lambda: None, lambda: None)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    return Clock(
        lambda: torch.cuda.synchronize(device),
        lambda: torch.cuda.max_memory_allocated(device) - base,
    )


def jax_clock() -> Clock:
    """A clock for a JAX run: JAX has no device-wide sync, so the caller's logs must be read
    (Keras reads them before its batch-end and epoch-end callbacks); peak memory from XLA's
    allocator, which cannot be reset (a fresh process per run makes it the run's peak)."""
    import jax

    device = jax.local_devices()[0]

    def in_use(key: str) -> int | None:
        stats = device.memory_stats()
        return stats[key] if stats and key in stats else None

    base = in_use("bytes_in_use") or 0

    def peak_bytes() -> int | None:
        peak = in_use("peak_bytes_in_use")
        return None if peak is None else peak - base

    return Clock(lambda: None, peak_bytes)


def lenet_arrays(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random MNIST-shaped data: (samples, 1, 28, 28) float32 images and int64 labels 0-9."""
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 1, 28, 28), dtype=np.float32)
    return x, rng.integers(0, 10, samples)
