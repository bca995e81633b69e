"""Where fit()'s peak GPU memory comes from: ResNet-50, bf16, channels_last, batch 256.

The speed issue's bar wants fit()'s peak memory no higher than the hand-written loop's; on an
H100 kiln peaked at 18.7 GB against 10.8 GB. This prints the peak allocated memory at each
phase of one process per variant (after set-up, after steps 1, 4 and 5, at the end), so the
phase that adds the memory shows, and with --snapshot writes a memory-history pickle per run
(open it at https://pytorch.org/memory_viz).

    python benchmarks/train_memory.py       # hand loops (eager, compiled), kiln, kiln eager, ...
    python benchmarks/train_memory.py --only hand-eager,kiln-no-compile --snapshot /tmp/mem
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

GB = 2**30
VARIANTS = {
    "hand-eager": {},
    "hand-compile": {},
    "kiln": {},
    "kiln-no-compile": {"compile": False},  # with SGD there are no CUDA graphs to turn off
    "kiln-no-compile-no-cl": {"compile": False, "channels_last": False},
}


def _peak() -> float:
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / GB, 2)


def run(variant: str, steps: int, snapshot: Path | None) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    torch.backends.cudnn.benchmark = True
    if snapshot:
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    device = torch.device("cuda")
    batch = 256
    x = torch.rand(batch * steps, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch * steps,), device=device)
    marks = {"data": _peak()}
    if variant.startswith("hand"):
        from _speed.torch_resnet import resnet50

        model = resnet50().to(device, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def forward_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cuda", torch.bfloat16):
                return torch.nn.functional.cross_entropy(model(xb), yb)

        step_fn = torch.compile(forward_loss) if variant == "hand-compile" else forward_loss
        marks["setup"] = _peak()
        for i in range(steps):
            xb = x[i * batch : (i + 1) * batch].contiguous(memory_format=torch.channels_last)
            step_fn(xb, y[i * batch : (i + 1) * batch]).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i + 1 in (1, 4, 5):
                marks[f"step{i + 1}"] = _peak()
    else:
        import kiln
        from kiln import callbacks as C

        class Marks(C.Callback):
            def on_train_begin(self, trainer):  # type: ignore[no-untyped-def]
                marks["setup"] = _peak()

            def on_batch_end(self, trainer, step, logs):  # type: ignore[no-untyped-def]
                if step in (1, 4, 5):
                    marks[f"step{step}"] = _peak()

        model = kiln.zoo.create_model("resnet50")
        model.compile(optimizer="sgd", lr=0.1, momentum=0.9, loss="cross_entropy",
                      log_every=10**9, **VARIANTS[variant])  # fmt: skip
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0, callbacks=[Marks()], track=False)
    marks["end"] = _peak()
    if snapshot:
        snapshot.mkdir(parents=True, exist_ok=True)
        torch.cuda.memory._dump_snapshot(str(snapshot / f"{variant}.pickle"))
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--snapshot", type=Path, help="write memory-history pickles here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("train_memory.py measures CUDA memory: run it on a machine with a GPU.")
    if args.worker:  # one variant in this process: peaks are per process
        print(json.dumps(run(args.worker, args.steps, args.snapshot)))
        return
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"ResNet-50, batch 256, bf16, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("peak allocated GB after each phase")
    for name in names:
        cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps)]
        if args.snapshot:
            cmd += ["--snapshot", str(args.snapshot)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name:16s} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:16s} " + "  ".join(f"{k} {v:5.2f}" for k, v in marks.items()), flush=True)


if __name__ == "__main__":
    main()
