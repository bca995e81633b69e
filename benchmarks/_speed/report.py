"""Turns the competitors' raw timings into steady-state numbers, ratios and two tables."""

from __future__ import annotations

import datetime
import statistics
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from _speed.common import Config

TITLES = {"lenet": "LeNet-5", "resnet50": "ResNet-50"}
COLUMNS = ("competitor", "{time}", "img/s", "first step", "first epoch", "peak memory",
           "kiln speedup", "notes")  # fmt: skip


def summarize(results: dict[str, dict[str, Any]]) -> None:
    """Add ``steady_s`` (median epoch after the first), ``img_s`` and ``kiln_speedup``
    (competitor time per image / kiln's: above 1, kiln is faster) to each finished run."""
    for result in results.values():
        if result["status"] == "ok":
            epochs = result["epoch_s"]
            result["steady_s"] = statistics.median(epochs[1:] or epochs)
            result["img_s"] = result["samples_per_epoch"] / result["steady_s"]
    kiln = results.get("kiln", {})
    for result in results.values():
        if result["status"] == "ok" and kiln.get("status") == "ok":
            result["kiln_speedup"] = kiln["img_s"] / result["img_s"]


def title(cfg: Config) -> str:
    steps = f"{cfg.steps_per_epoch} steps/epoch"
    if cfg.epochs == 1:
        timed = "one epoch, warm-up included"
    else:
        timed = "epoch 2 timed" if cfg.epochs == 2 else f"median of epochs 2-{cfg.epochs}"
    return (
        f"{TITLES[cfg.workload]}: {cfg.samples:,} samples, batch {cfg.batch_size}, {steps}, "
        f"{cfg.epochs} epochs ({timed}), synthetic data"
    )


def environment(results: dict[str, dict[str, Any]]) -> str:
    """The card and torch version, from the first worker that reported them, and the date."""
    envs = [r.get("env", {}) for r in results.values()]
    device = next((e["device"] for e in envs if "device" in e), "unknown device")
    torch = next((e["torch"] for e in envs if "torch" in e), "?")
    return f"{device}, torch {torch}, {datetime.date.today().isoformat()}"


def _row(cfg: Config, name: str, r: dict[str, Any]) -> list[str]:
    if r["status"] != "ok":
        return [name, "-", "-", "-", "-", "-", "-", f"{r['status']}: {r['reason']}"]
    if cfg.workload == "lenet":
        time = f"{r['steady_s']:.3f}"
    else:
        time = f"{1000 * r['steady_s'] / r['steps_per_epoch']:.1f}"
    first = f"{r['first_step_s']:.2f} s" if r["first_step_s"] is not None else "-"
    epoch = f"{r['first_epoch_s']:.2f} s" if r.get("first_epoch_s") is not None else "-"
    peak = f"{r['peak_bytes'] / 2**20:,.0f} MiB" if r["peak_bytes"] is not None else "-"
    speedup = f"{r['kiln_speedup']:.2f}x" if "kiln_speedup" in r else "-"
    return [name, time, f"{r['img_s']:,.0f}", first, epoch, peak, speedup, r["note"]]


def _headers(cfg: Config) -> list[str]:
    time = "s/epoch" if cfg.workload == "lenet" else "ms/step"
    return [c.format(time=time) for c in COLUMNS]


def print_tables(cfg: Config, results: dict[str, dict[str, Any]], console: Console) -> None:
    """A rich table to read, then the same as Markdown to paste into BENCHMARKS.md."""
    table = Table(title=f"{title(cfg)}\n{environment(results)}", title_justify="left")
    for i, header in enumerate(_headers(cfg)):
        table.add_column(header, justify="right" if 0 < i < 7 else "left")
    body = [_row(cfg, name, result) for name, result in results.items()]
    for row in body:
        table.add_row(*map(Text, row))  # Text: no rich markup in error messages
    console.print(table)
    console.print(
        "kiln speedup: the competitor's time per image / kiln's (above 1: kiln is faster). "
        "First step: from building the model to the first optimizer step done (data transfer, "
        "compilation and capture included); first epoch: from there to the end of epoch 1. "
        "Peak memory: device memory allocated during the run beyond what was allocated before "
        "it (ResNet-50's data starts on the device and is not counted; LeNet's starts on the "
        "host: a run that copies it over counts it).",
        highlight=False,
    )
    markdown = [f"**{title(cfg)}** — {environment(results)}", ""]
    markdown += [_md_line(_headers(cfg)), "|---|" + "---:|" * 6 + "---|"]
    markdown += [
        _md_line([f"**{row[0]}**" if row[0] == "kiln" else row[0], *row[1:]]) for row in body
    ]
    console.print("\n" + "\n".join(markdown) + "\n", markup=False, highlight=False, soft_wrap=True)


def _md_line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"
