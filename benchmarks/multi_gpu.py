"""kiln's fit() against raw PyTorch DDP on 1, 2, 4 ... GPUs of one host (multi-GPU issue).

    python benchmarks/multi_gpu.py --gpus 1,2,4                  # ResNet-50, bf16, 256/GPU
    python benchmarks/multi_gpu.py --gpus 1,2 --model lenet5 --batch-size 64 --steps 5  # CPU smoke
    python benchmarks/multi_gpu.py --gpus 1,8 --model transformer --batch-size 8  # FSDP2, 1.04B
    python benchmarks/multi_gpu.py --gpus 1,2 --model transformer --size tiny --batch-size 4 \
        --steps 3                                                # CPU smoke of the FSDP path

The transformer (``_multi/transformer.py``: 1.04e9 parameters, 1,024-token sequences) trains
fully sharded: kiln's fit(strategy="fsdp") against FSDP2 by hand (each block a unit, bf16
gathers, fp32 gradient reduction, fused AdamW), samples being sequences.

Each (competitor, N) runs as its own torchrun job (a fresh process group), N processes with
``--batch-size`` images each, ``--epochs`` epochs of ``--steps`` steps; the first epoch is
warm-up (compilation, cuDNN autotuning). Prints global and per-GPU img/s, scaling efficiency
(img/s at N over N times img/s at 1, for the same competitor) and kiln / raw DDP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).resolve().parent / "_multi" / "worker.py"


def run(competitor: str, n: int, args: argparse.Namespace, folder: Path) -> dict | None:
    """`competitor` is "raw-ddp", "kiln", or "kiln:<variant>" (see _multi/worker.py)."""
    out = folder / f"{competitor.replace(':', '-')}-{n}.json"
    name, _, variant = competitor.partition(":")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           str(WORKER), "--competitor", name, "--model", args.model, "--size", args.size,
           "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--epochs", str(args.epochs),
           "--out", str(out), "--variant", variant or "default"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if not out.exists():
        print(f"{competitor} on {n}: failed\n{done.stderr[-4000:]}", file=sys.stderr, flush=True)
        return None
    if done.returncode != 0:  # rank 0 wrote its result: the measurement is whole
        print(f"{competitor} on {n}: a process failed after the measurement (exit code "
              f"{done.returncode}: gloo tearing down?)", file=sys.stderr, flush=True)  # fmt: skip
    result = json.loads(out.read_text())
    # as it comes: a run cut short by a time limit still leaves what it measured
    print(f"{competitor} on {n}: {result['img_s']:,.1f} samples/s, peak {_peak(result)} GiB, "
          f"epochs {result['epoch_s']}", flush=True)  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default="1,2,4", help="comma-separated process counts")
    models = ["resnet50", "lenet5", "transformer"]
    parser.add_argument("--model", default="resnet50", choices=models)
    parser.add_argument("--size", default="1b", help="the transformer's: 1b or tiny")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per GPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument(
        "--kiln-variants", default="",
        help="comma-separated what-if set-ups for kiln, run at the largest GPU count after "
        "the main table's runs: no-optimize-ddp, python-reducer, static-graph, bucket-100, "
        "bf16-grads, no-broadcast-buffers "
        "(DDP); blocks, no-compile-blocks, compiled-blocks, prefetch, full-shard, bf16-reduce "
        "(FSDP); no-compile (any)",
    )  # fmt: skip
    args = parser.parse_args()
    counts = [int(n) for n in args.gpus.split(",")]
    variants = [v for v in args.kiln_variants.split(",") if v]
    raw = "raw-fsdp" if args.model == "transformer" else "raw-ddp"
    fsdp_variants = {"no-compile", "blocks", "no-compile-blocks", "compiled-blocks", "prefetch",
                     "full-shard", "bf16-reduce"}  # fmt: skip
    if raw == "raw-fsdp" and set(variants) - fsdp_variants:
        parser.error(
            f"the transformer trains with FSDP: --kiln-variants of {sorted(fsdp_variants)}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        results = {(c, n): run(c, n, args, Path(tmp)) for n in counts for c in (raw, "kiln")}
        for v in variants:
            results[(f"kiln:{v}", counts[-1])] = run(f"kiln:{v}", counts[-1], args, Path(tmp))
    env = next((r for r in results.values() if r), {})
    unit = "seq/s" if args.model == "transformer" else "img/s"
    print(
        f"{args.model}, {args.batch_size} samples per process, {env.get('device', '?')}, "
        f"torch {env.get('torch', '?')}"
    )
    print(
        f"| GPUs | {raw} {unit} | raw efficiency | kiln {unit} | kiln per GPU | kiln efficiency "
        "| kiln / raw | peak GiB (raw, kiln) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        reference, kln = results[(raw, n)], results[("kiln", n)]
        print(
            "| "
            + " | ".join(
                [
                    str(n),
                    _num(reference),
                    _eff(results, raw, n),
                    _num(kln),
                    _num(kln, n),
                    _eff(results, "kiln", n),
                    _ratio(kln, reference),
                    f"{_peak(reference)}, {_peak(kln)}",
                ]
            )
            + " |"
        )
    one, n = results.get(("kiln", 1)), counts[-1]
    for v in variants:
        r = results[(f"kiln:{v}", n)]
        eff = f"{100 * r['img_s'] / (n * one['img_s']):.1f}%" if r and one else "-"
        ratio = _ratio(r, results[("kiln", n)])
        print(f"kiln:{v} on {n}: {_num(r)} img/s, {_num(r, n)} per GPU, efficiency {eff} "
              f"(against kiln's default on 1), {ratio}x the default, "
              f"peak {_peak(r)} GiB")  # fmt: skip


def _peak(r: dict | None) -> str:
    return f"{r.get('peak_gib', 0):.1f}" if r else "-"


def _num(r: dict | None, per: int = 1) -> str:
    return f"{r['img_s'] / per:,.0f}" if r else "failed"


def _eff(results: dict, competitor: str, n: int) -> str:
    one, many = results.get((competitor, 1)), results.get((competitor, n))
    return f"{100 * many['img_s'] / (n * one['img_s']):.1f}%" if one and many else "-"


def _ratio(a: dict | None, b: dict | None) -> str:
    return f"{a['img_s'] / b['img_s']:.3f}" if a and b else "-"


if __name__ == "__main__":
    main()
