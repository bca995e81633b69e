"""kiln's fit() against a hand-written PyTorch loop doing the same math (LeNet-5, MNIST-sized).

Both train the same architecture with Adam on data already in memory (on the device), with the
same batch size, shuffling each epoch and accumulating loss and accuracy on the device; the
hand loop uses plain torch.nn modules. Prints steady-state seconds per epoch and the ratio.

    python benchmarks/train_overhead.py                  # CPU, fp32
    python benchmarks/train_overhead.py --device cuda    # GPU (fit's default precision there)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import kiln
from kiln import callbacks as C


def torch_lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_loop(
    x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int, device: torch.device
) -> list[float]:
    model = torch_lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    x, y = x.to(device), y.to(device)
    sums = torch.zeros(2, device=device)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(x), device=device)
        sums.zero_()
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = nn.functional.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sums += torch.stack([loss.detach() * len(yb), (out.argmax(1) == yb).sum()])
        sums.tolist()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class EpochTimer(C.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_epoch_begin(self, trainer, epoch):  # type: ignore[no-untyped-def]
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer, epoch, logs):  # type: ignore[no-untyped-def]
        self.times.append(time.perf_counter() - self.start)  # logs were read: device synced


def kiln_fit(
    x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int, device: torch.device, precision: str
) -> list[float]:
    model = kiln.zoo.create_model("lenet5", augment=False)
    model.compile(
        optimizer="adam",
        loss="cross_entropy",
        metrics=["accuracy"],
        device=str(device),
        precision=precision,
        log_every=10**9,
    )
    timer = EpochTimer()
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[timer])
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--samples", type=int, default=8000, help="repeat the bundled digits up to this"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    (x, y), _ = kiln.datasets.mnist()
    reps = -(-args.samples // len(x))
    x, y = x.repeat(reps, 1, 1, 1)[: args.samples], y.repeat(reps)[: args.samples]
    runs = {
        "hand-written loop": lambda: hand_loop(x, y, args.epochs, args.batch_size, device),
        "kiln fit()": lambda: kiln_fit(x, y, args.epochs, args.batch_size, device, args.precision),
    }
    # Shared machines drift by several percent over a minute: alternate the two (ABBA...) and
    # compare each pair run back to back, rather than one long run of each.
    results: dict[str, list[float]] = {name: [] for name in runs}
    ratios = []
    for rep in range(args.repeats):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        pair = {}
        for name in order:
            torch.manual_seed(0)
            pair[name] = statistics.median(runs[name]()[1:])  # epoch 1 holds warm-up
            results[name].append(pair[name])
        ratios.append(pair["kiln fit()"] / pair["hand-written loop"])
    steps = -(-args.samples // args.batch_size)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"LeNet-5, {args.samples} samples, batch {args.batch_size}, {steps} steps/epoch, {name}, "
        f"torch {torch.__version__}, kiln precision {args.precision}, {args.repeats} repeats"
    )
    for key, times in results.items():
        seconds = statistics.median(times)
        print(f"  {key:<18} {seconds:8.3f} s/epoch  {1e6 * seconds / steps:8.1f} us/step")
    ratio = statistics.median(ratios)
    spread = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"  kiln / hand-written: {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f}%; "
          f"per repeat: {spread})")  # fmt: skip


if __name__ == "__main__":
    main()
