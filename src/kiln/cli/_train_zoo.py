"""``kiln train NAME``: train a zoo model with its recipe, report test accuracy, save it."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console

from kiln.train.callbacks import WarmupCosine
from kiln.zoo import get_entry


def train_zoo_model(args: argparse.Namespace) -> int:
    from kiln.data import datasets

    console = Console()
    try:
        entry = get_entry(args.target)
    except KeyError as e:
        raise SystemExit(f"kiln train: {e.args[0]}") from None
    recipe = dict(entry.recipe)
    dataset = args.dataset or entry.dataset
    load = getattr(datasets, dataset, None)
    if load is None:
        raise SystemExit(f"kiln train: unknown dataset {dataset!r}; see kiln.datasets.")
    (x, y), (xt, yt) = load(args.data) if args.data else load()
    model: Any = entry.build()
    compile_args = {k: recipe.pop(k) for k in ("optimizer", "loss", "metrics") if k in recipe}
    model.compile(**compile_args, lr=args.lr, device=args.device)
    epochs = args.epochs or recipe.pop("epochs", 1)
    batch_size = args.batch_size or recipe.pop("batch_size", 32)
    console.print(
        f"[bold]kiln train {entry.name}[/]: {len(x):,} training and {len(xt):,} test "
        f"samples from {dataset}, {epochs} epochs, batch {batch_size}"
    )
    start = time.perf_counter()
    schedule = recipe.pop("schedule", None)
    callbacks = [WarmupCosine()] if schedule == "cosine" else []
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
    model.save(output)
    console.print(
        f"test accuracy: [bold]{logs.get('accuracy', float('nan')):.4f}[/] "
        f"(loss {logs['loss']:.4f}) after {seconds:.1f}s of training; saved {output}"
    )
    return 0
