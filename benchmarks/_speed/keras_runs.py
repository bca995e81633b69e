"""Keras 3's fit() on the same models; the backend comes from KERAS_BACKEND (one per process).

Imports nothing of Keras, JAX or torch at module level: the worker picks the backend first.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from _speed.common import Clock, Config, Skip, jax_clock, lenet_arrays, torch_clock


def _import_keras(cfg: Config) -> Any:
    if cfg.device == "cpu":  # both backends would take the GPU if there is one
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        import keras
    except Exception as error:  # ImportError, or the backend's own import failing
        raise Skip(f"keras not importable ({type(error).__name__}: {error})") from error
    return keras


def _clock(keras: Any, cfg: Config) -> Clock:
    if keras.backend.backend() == "jax":
        return jax_clock()
    import torch

    return torch_clock(torch.device(cfg.device))


def _timer(keras: Any, clock: Clock) -> Any:
    class Timer(keras.callbacks.Callback):
        # Keeps Keras's asynchronous batch-end dispatch, as with no callback at all: the batch
        # logs are read (a sync) in a worker thread before on_train_batch_end runs there, and
        # the epoch's end waits for them all.
        async_safe = True

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            clock.epoch_begin()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            clock.step_done()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.epoch_end()

    return Timer()


def _note(keras: Any, extra: str) -> str:
    backend = keras.backend.backend()
    version = importlib.import_module(backend).__version__
    return f"keras {keras.__version__}, {backend} {version}, {extra}"


def _compile_and_fit(keras: Any, model: Any, optimizer: Any, clock: Clock, **fit: Any) -> None:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    model.fit(verbose=0, callbacks=[_timer(keras, clock)], **fit)


def lenet(cfg: Config) -> dict:
    """Keras's usual path: NumPy arrays to fit(), channels-last images."""
    keras = _import_keras(cfg)
    L = keras.layers
    x, y = lenet_arrays(cfg.samples)
    x, y = x.transpose(0, 2, 3, 1).copy(), y.astype(np.int32)
    clock = _clock(keras, cfg)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
        L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10),
    ])  # fmt: skip
    optimizer = keras.optimizers.Adam(1e-3)
    _compile_and_fit(keras, model, optimizer, clock, x=x, y=y, batch_size=cfg.batch_size,
                     epochs=cfg.epochs)  # fmt: skip
    return clock.result(cfg.steps_per_epoch, cfg.samples, _note(keras, "NumPy input, fp32"))


def resnet50(cfg: Config) -> dict:
    """keras.applications.ResNet50 under the mixed_bfloat16 policy, fed batches already on the
    device (arrays given to fit() would be copied through the host each step)."""
    keras = _import_keras(cfg)
    if keras.backend.backend() != "jax":
        raise Skip("runs on Keras's JAX backend only")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    batches = _jax_batches(cfg)
    clock = _clock(keras, cfg)
    model = keras.applications.ResNet50(weights=None, classifier_activation=None)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    _compile_and_fit(keras, model, optimizer, clock, x=batches, shuffle=False,
                     steps_per_epoch=cfg.steps_per_epoch, epochs=cfg.epochs)  # fmt: skip
    note = _note(keras, "mixed_bfloat16, ResNet v1 (stride on the 1x1)")
    return clock.result(cfg.steps_per_epoch, cfg.samples, note)


def _jax_batches(cfg: Config) -> Iterator[tuple[Any, Any]]:
    """Endless (images, labels) batches gathered on the device from random device-resident
    data, a new permutation each epoch, as the torch loops do."""
    import jax

    key, kx, ky = jax.random.split(jax.random.key(0), 3)
    x = jax.random.uniform(kx, (cfg.samples, 224, 224, 3))
    y = jax.random.randint(ky, (cfg.samples,), 0, 1000)
    steps, batch = cfg.steps_per_epoch, cfg.batch_size

    def batches() -> Iterator[tuple[Any, Any]]:
        nonlocal key
        while True:
            key, sub = jax.random.split(key)
            order = jax.random.permutation(sub, cfg.samples)[: steps * batch]
            for idx in order.reshape(steps, batch):
                yield x[idx], y[idx]

    return batches()
