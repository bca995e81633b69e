"""``kiln train NAME``: train a zoo model with its recipe, report test accuracy, save it."""

from __future__ import annotations

import argparse
import inspect
import os
import time
from typing import Any

from rich.console import Console

from kiln.train.callbacks import WarmupCosine
from kiln.zoo import ZooEntry, get_entry

FIT_KEYS = ("epochs", "batch_size", "schedule", "samples")  # the rest of a recipe is compile's


def train_zoo_model(args: argparse.Namespace) -> int:
    main_process = int(os.environ.get("RANK", "0")) == 0  # under `kiln launch`, rank 0 reports
    console = Console(quiet=not main_process)
    try:
        entry = get_entry(args.target)
    except KeyError as e:
        raise SystemExit(f"kiln train: {e.args[0]}") from None
    recipe = dict(entry.recipe)
    fit = {k: recipe.pop(k) for k in FIT_KEYS if k in recipe}
    model: Any = _build(entry, args.image_size)
    (x, y), (xt, yt), source = _load_data(entry, args, model, fit.get("samples", 2560))
    recipe["lr"] = args.lr if args.lr is not None else recipe.get("lr")
    model.compile(**recipe, device=args.device)
    epochs = args.epochs or fit.get("epochs", 1)
    batch_size = args.batch_size or fit.get("batch_size", 32)
    console.print(
        f"[bold]kiln train {entry.name}[/]: {len(x):,} training and {len(xt):,} test "
        f"samples from {source}, {epochs} epochs, batch {batch_size}"
    )
    start = time.perf_counter()
    callbacks = [WarmupCosine()] if fit.get("schedule") == "cosine" else []
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(xt, yt),
        verbose=args.verbose,
        resume=args.resume,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - start
    logs = model.evaluate(xt, yt, verbose=0)
    output = args.output or f"{entry.name}.kiln"
    if main_process:
        model.save(output)
    console.print(
        f"test accuracy: [bold]{logs.get('accuracy', float('nan')):.4f}[/] "
        f"(loss {logs['loss']:.4f}) after {seconds:.1f}s of training; saved {output}"
    )
    return 0


def _build(entry: ZooEntry, image_size: int | None) -> Any:
    if image_size is None:
        return entry.build()
    if "image_size" not in inspect.signature(entry.build).parameters:
        raise SystemExit(f"kiln train: {entry.name} has a fixed input size; drop --image-size.")
    return entry.build(image_size=image_size)


def _load_data(entry: ZooEntry, args: argparse.Namespace, model: Any, samples: int) -> Any:
    """``((x, y), (xt, yt), description)``: synthetic images or a kiln.datasets set."""
    from kiln.data import datasets

    if args.synthetic or (entry.dataset == "synthetic" and not args.dataset):
        shape = tuple(model.input_specs[0].shape)
        classes = inspect.signature(entry.build).parameters.get("num_classes")
        if classes is None or not isinstance(classes.default, int):
            raise SystemExit(f"kiln train: {entry.name} has no num_classes default for labels.")
        data = datasets.synthetic_images(args.samples or samples, shape, classes.default)
        return (*data, f"synthetic {shape} images of {classes.default} classes")
    dataset = args.dataset or entry.dataset
    load = getattr(datasets, dataset, None)
    if load is None or dataset == "synthetic_images":
        raise SystemExit(f"kiln train: unknown dataset {dataset!r}; see kiln.datasets.")
    (x, y), test = load(args.data) if args.data else load()
    if args.samples:
        x, y = x[: args.samples], y[: args.samples]
    return (x, y), test, dataset
