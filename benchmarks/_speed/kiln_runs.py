"""kiln's fit() with its defaults: no speed flags, kiln is to pick the fast path by itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

import kiln
from _speed.common import Clock, Config, Skip, lenet_arrays, torch_clock
from _speed.torch_loops import resnet_data
from kiln import callbacks as C


class _Timer(C.Callback):
    """Feeds the clock; its only sync of its own is after step 1 (fit reads the logs, and so
    syncs, at every epoch end anyway)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.precision = "?"

    def on_train_begin(self, trainer: Any) -> None:
        self.precision = getattr(trainer, "precision", "?")

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        self.clock.epoch_begin()

    def on_batch_end(self, trainer: Any, step: int, logs: Any) -> None:
        if step == 1:
            self.clock.step_done()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: Any) -> None:
        self.clock.epoch_end()


def _fit(cfg: Config, build: Callable[[], Any], x: Any, y: Any, **options: Any) -> dict:
    device = torch.device(cfg.device)
    if device.type != "cuda":  # kiln's default device is CUDA when there is one
        options["device"] = cfg.device
    clock = torch_clock(device)
    model = build()
    model.compile(loss="cross_entropy", metrics=["accuracy"], **options)
    timer = _Timer(clock)
    # the first epoch in a fit() of its own, then the rest: with a compile running behind the
    # training (small models, background_compile="auto"), fit() trains its first epochs with
    # the eager step and returns once the compile is done, so the second fit() times the
    # compiled step (its first epoch ends when the first one's did: the bar's end point)
    fit = partial(model.fit, x, y, batch_size=cfg.batch_size, verbose=0, callbacks=[timer])
    fit(epochs=1)
    first_fit = time.perf_counter() - clock.start
    if cfg.epochs > 1:
        fit(epochs=cfg.epochs - 1)
    behind = "compiled behind the training" if model._trainer.compiles_behind else "compiled first"
    note = (f"kiln {kiln.__version__}, defaults (precision {timer.precision}; {behind}; "
            f"the first fit() returned at {first_fit:.1f} s)")  # fmt: skip
    return clock.result(cfg.steps_per_epoch, cfg.samples, note)


def lenet_foreground(cfg: Config) -> dict:
    """kiln with ``background_compile=False``: the step compiles before the first one runs (the
    default before 2026-11-28 for every model; now for models over 5M parameters)."""
    return _lenet_variant(cfg, "background_compile=False", background_compile=False)


def lenet(cfg: Config) -> dict:
    return _lenet_variant(cfg, "defaults")


def lenet_gather(cfg: Config) -> dict:
    """kiln with the experimental ``gather_in_graph=True``: the batch gathered in the graph."""
    return _lenet_variant(cfg, "gather_in_graph=True", gather_in_graph=True)


def lenet_fp32(cfg: Config) -> dict:
    """kiln in fp32 (no autocast): for a model this small the bf16 casts are kernels of their
    own in a launch-bound step; does dropping them pay more than bf16's arithmetic?"""
    return _lenet_variant(cfg, "precision='fp32'", precision="fp32")


def lenet_autotune(cfg: Config) -> dict:
    """kiln with ``compile="max-autotune-no-cudagraphs"``: Inductor times Triton templates
    against cuDNN for the small convolutions and fuses their epilogues where a template wins."""
    return _lenet_variant(cfg, "compile='max-autotune-no-cudagraphs'",
                          compile="max-autotune-no-cudagraphs")  # fmt: skip


def lenet_no_channels_last(cfg: Config) -> dict:
    """kiln with ``channels_last=False``: with 1, 6 and 16 channels the NHWC layout may cost
    LeNet's convolutions more than it saves."""
    return _lenet_variant(cfg, "channels_last=False", channels_last=False)


def lenet_coordinate_descent(cfg: Config) -> dict:
    """kiln with ``compile="coordinate-descent"`` (Inductor tunes its kernels' block sizes)."""
    return _lenet_variant(cfg, 'compile="coordinate-descent"', compile="coordinate-descent")


def lenet_cudnn_benchmark(cfg: Config) -> dict:
    """kiln with cuDNN's autotuning on (the default before 2026-11-28; "auto" now leaves it off
    for models with under 1M convolution weights)."""
    return _lenet_variant(cfg, "cudnn_benchmark=True", cudnn_benchmark=True)


def lenet_conv_cudnn(cfg: Config) -> dict:
    """kiln with cuDNN's convolutions under torch.compile (the default before 2026-11-28 took
    LeNet-5's small convolutions as matrix products: ``Conv2D.matmul_when_compiled``)."""
    from kiln.layers._conv import _Conv

    _Conv.matmul_when_compiled = False
    return _lenet_variant(cfg, "cuDNN's convolutions")


def lenet_conv_slices(cfg: Config) -> dict:
    """kiln with the small convolutions' rows cut by one strided slice per kernel offset
    (``kiln.layers._conv_matmul.ROWS = "slices"``; the default is ``Tensor.unfold``)."""
    from kiln.layers import _conv_matmul

    _conv_matmul.ROWS = "slices"
    return _lenet_variant(cfg, "convolutions as products of stacked slices")


def lenet_conv_unaligned(cfg: Config) -> dict:
    """kiln with the small convolutions' products unpadded (``_conv_matmul.ALIGN = 1``: depths
    25 and 150 and 6 filters as they are)."""
    from kiln.layers import _conv_matmul

    _conv_matmul.ALIGN = 1
    return _lenet_variant(cfg, "convolutions as unpadded products")


def lenet_dense_aligned(cfg: Config) -> dict:
    """kiln with its Dense layers' products padded to multiples of 8 in the compiled step
    (``kiln.layers.Dense.align_when_compiled = 8``; LeNet-5's 84 and 10 units are unaligned)."""
    from kiln import layers

    layers.Dense.align_when_compiled = 8
    return _lenet_variant(cfg, "Dense products padded to multiples of 8")


def lenet_partial_graph(cfg: Config) -> dict:
    """kiln with the epoch's partial last batch captured after one eager run, not three
    (``CudaGraphStep.LATER_WARMUP = 1``)."""
    from kiln.train._graphed import CudaGraphStep

    CudaGraphStep.LATER_WARMUP = 1
    return _lenet_variant(cfg, "the partial batch captured after one warm-up")


def _lenet_variant(cfg: Config, what: str, **options: Any) -> dict:
    x, y = lenet_arrays(cfg.samples)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    build = partial(kiln.zoo.create_model, "lenet5", augment=False)
    result = _fit(cfg, build, x, y, optimizer="adam", **options)
    return {**result, "note": result["note"].replace("defaults", what)}


def resnet50(cfg: Config) -> dict:
    if "resnet50" not in {entry.name for entry in kiln.zoo.list_models()}:
        raise Skip("kiln has no resnet50 yet")
    x, y = resnet_data(cfg)
    build = partial(kiln.zoo.create_model, "resnet50")
    return _fit(cfg, build, x, y, optimizer="sgd", lr=0.1, momentum=0.9)


def resnet50_long(cfg: Config) -> dict:
    """kiln's defaults in one fit() planned as long as a real training run (at least the
    20,000 steps from which ``compile="auto"`` tunes kernels), stopped by a callback after the
    benchmark's epochs: what a user's long fit runs, the tuning decision included."""
    if "resnet50" not in {entry.name for entry in kiln.zoo.list_models()}:
        raise Skip("kiln has no resnet50 yet")
    from kiln.train._fast_path import TUNE_MIN_STEPS

    x, y = resnet_data(cfg)
    clock = torch_clock(torch.device(cfg.device))
    model = kiln.zoo.create_model("resnet50")
    model.compile(loss="cross_entropy", metrics=["accuracy"], optimizer="sgd", lr=0.1,
                  momentum=0.9)  # fmt: skip
    timer = _Timer(clock)
    planned = -(-TUNE_MIN_STEPS // cfg.steps_per_epoch)
    model.fit(x, y, batch_size=cfg.batch_size, epochs=planned, verbose=0,
              callbacks=[timer, _StopAfter(cfg.epochs)])  # fmt: skip
    mode = model._trainer.compile_mode or "torch's default"
    note = (f"kiln {kiln.__version__}, defaults, one fit() planned for {planned} epochs "
            f"({planned * cfg.steps_per_epoch:,} steps), stopped after {cfg.epochs}; "
            f"compile mode {mode}")  # fmt: skip
    return clock.result(cfg.steps_per_epoch, cfg.samples, note)


class _StopAfter(C.Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer: Any, epoch: int, logs: Any) -> None:
        trainer.stop_training = epoch + 1 >= self.epochs


def resnet50_autotune(cfg: Config) -> dict:
    """kiln with ``compile="max-autotune-no-cudagraphs"``: kernel choices timed at compile."""
    return _resnet_variant(cfg, "compile='max-autotune-no-cudagraphs'",
                           compile="max-autotune-no-cudagraphs")  # fmt: skip


def resnet50_coordinate_descent(cfg: Config) -> dict:
    """kiln with ``compile="coordinate-descent"``: Inductor's coordinate-descent tuning of its
    generated kernels' block sizes (BatchNorm, ReLU and their backward: the memory-bound part
    of a ResNet step); "auto" picks it for fits of 20,000 steps or more."""
    return _resnet_variant(cfg, 'compile="coordinate-descent"', compile="coordinate-descent")


def resnet50_bn_aten(cfg: Config) -> dict:
    """kiln with BatchNorm and its backward left to ATen's CUDA kernels (channels_last
    statistics and backward reductions) instead of Inductor's decomposition into reductions and
    pointwise kernels. An experiment: the ReLU and add no longer fuse with the normalization."""
    _keep_in_aten("batch_norm")
    return _resnet_variant(cfg, "BatchNorm in ATen")


def resnet50_bn_aten_backward(cfg: Config) -> dict:
    """kiln with only BatchNorm's backward left to ATen (the forward stays decomposed, its
    normalization fused with ReLU and add by Inductor)."""
    _keep_in_aten("batch_norm_backward")
    return _resnet_variant(cfg, "BatchNorm's backward in ATen")


def _keep_in_aten(fragment: str) -> None:
    """Inductor lowers the operators whose names hold ``fragment`` as calls to ATen's kernels."""
    from torch._inductor import decomposition

    for op in [op for op in decomposition.decompositions if fragment in str(op)]:
        del decomposition.decompositions[op]


def _resnet_variant(cfg: Config, what: str, **options: Any) -> dict:
    if "resnet50" not in {entry.name for entry in kiln.zoo.list_models()}:
        raise Skip("kiln has no resnet50 yet")
    x, y = resnet_data(cfg)
    build = partial(kiln.zoo.create_model, "resnet50")
    result = _fit(cfg, build, x, y, optimizer="sgd", lr=0.1, momentum=0.9, **options)
    return {**result, "note": result["note"].replace("defaults", what)}
