"""precision="fp8" against "bf16" in kiln's fit(), and a hand-written torchao float8 loop.

A wide MLP (the layers fp8 is for: large GEMMs), synthetic data resident on the GPU, Adam, one
invocation on one card. Rows: kiln fit() in bf16 and in fp8 (defaults otherwise: compiled,
CUDA graphs), and a hand loop (torch.compile of forward + loss, bf16 autocast, fused Adam),
plain and with torchao's convert_to_float8_training. Prints steady-state seconds per epoch,
samples/s, and each row's time over kiln-fp8's.

    python benchmarks/train_fp8.py                       # H100 (compute capability >= 8.9)
    python benchmarks/train_fp8.py --width 8192 --depth 4 --batch 4096
    python benchmarks/train_fp8.py --smoke               # CPU, torchao's emulation (a check)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import kiln
from kiln import layers as L


def kiln_mlp(width: int, depth: int, classes: int) -> kiln.Sequential:
    hidden = [L.Dense(width, activation="relu") for _ in range(depth)]
    return kiln.Sequential([kiln.Input((width,)), *hidden, L.Dense(classes)])


def torch_mlp(width: int, depth: int, classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, classes))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_kiln(precision: str, args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor,
             device: torch.device) -> list[float]:  # fmt: skip
    model = kiln_mlp(args.width, args.depth, args.classes)
    model.compile(optimizer="adam", loss="cross_entropy", device=device, precision=precision)

    class Clock(kiln.train.callbacks.Callback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_epoch_end(self, trainer, epoch, logs):  # type: ignore[no-untyped-def]
            _sync(device)
            self.marks.append(time.perf_counter())

    clock = Clock()
    start = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch, verbose=0, callbacks=[clock],
              track=False)  # fmt: skip
    marks = [start, *clock.marks]
    return [b - a for a, b in itertools.pairwise(marks)]


def run_hand(float8: bool, args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor,
             device: torch.device) -> list[float]:  # fmt: skip
    model = torch_mlp(args.width, args.depth, args.classes).to(device)
    if float8:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        config = Float8LinearConfig(emulate=device.type != "cuda")
        convert_to_float8_training(
            model, config=config, module_filter_fn=lambda m, _: m.out_features % 16 == 0
        )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return nn.functional.cross_entropy(model(xb), yb)

    step: Callable[..., torch.Tensor] = torch.compile(loss_fn) if device.type == "cuda" else loss_fn
    times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x) - args.batch + 1, args.batch):
            idx = perm[i : i + args.batch]
            step(x[idx], y[idx]).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--classes", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=65536)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--only", default="kiln-bf16,kiln-fp8,hand-bf16,hand-fp8")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny, torchao's emulation")
    args = parser.parse_args()
    if args.smoke:
        args.device, args.width, args.depth, args.classes = "cpu", 64, 2, 16
        args.samples, args.batch, args.epochs = 512, 64, 2
        from kiln.train import _fp8

        _fp8.fp8_unsupported = lambda device: None  # type: ignore[assignment]  # emulation
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.samples, args.width, device=device, generator=g)
    y = torch.randint(0, args.classes, (args.samples,), device=device, generator=g)
    rows = {
        "kiln-bf16": lambda: run_kiln("bf16", args, x, y, device),
        "kiln-fp8": lambda: run_kiln("fp8", args, x, y, device),
        "hand-bf16": lambda: run_hand(False, args, x, y, device),
        "hand-fp8": lambda: run_hand(True, args, x, y, device),
    }
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# train_fp8: {card}, torch {torch.__version__}, MLP {args.depth} x {args.width}, "
          f"batch {args.batch}, {args.samples} samples, epochs 2..{args.epochs}")  # fmt: skip
    results = {}
    for name in args.only.split(","):
        times = rows[name]()
        results[name] = statistics.median(times[1:]) if len(times) > 1 else times[0]
    base = results.get("kiln-fp8")
    print("| row | s/epoch | samples/s | time / kiln-fp8 |\n|---|---:|---:|---:|")
    for name, seconds in results.items():
        ratio = f"{seconds / base:.2f}x" if base else "-"
        print(f"| {name} | {seconds:.4f} | {args.samples / seconds:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
