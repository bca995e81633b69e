"""Does kiln's ResNet-50 step compile to the same operations as the hand-written compile loop's?

The speed issue asks fit() for 1.05x the hand-written torch.compile loop on ResNet-50. Both hand
their step to Dynamo and AOTAutograd; if the forward and backward graphs they produce hold the
same ATen operations, Inductor gets the same program from both and kiln can only be faster
with kernels of its own, not with a different graph. This traces one step of each (bf16
autocast, channels_last, cross-entropy) on the CPU and prints how many of each ATen operation
the forward and backward graphs hold, where the two differ.

    python scripts/resnet_step_graphs.py            # 224x224, batch 2, on the CPU (~1 minute)
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import torch
from torch._functorch.aot_autograd import aot_module_simplified

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _speed.torch_resnet import resnet50 as loop_resnet50

import kiln


def step_graphs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """ATen operation counts of one training step's forward and backward graphs."""
    counts: dict[str, collections.Counter[str]] = {}

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        def keep(part: str) -> Any:
            def compiler(graph: torch.fx.GraphModule, _: list[Any]) -> Any:
                nodes = graph.graph.nodes
                counts[part] = collections.Counter(
                    str(n.target) for n in nodes if n.op == "call_function"
                )
                return graph.forward

            return compiler

        return aot_module_simplified(gm, example_inputs, fw_compiler=keep("forward"),
                                     bw_compiler=keep("backward"))  # fmt: skip

    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        return torch.nn.functional.cross_entropy(out.float(), y)

    torch._dynamo.reset()
    torch.compile(step, backend=backend)(x, y).backward()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,))
    ours = step_graphs(kiln.zoo.create_model("resnet50"), x, y)
    loop = step_graphs(loop_resnet50(), x, y)
    for part in ("forward", "backward"):
        a, b = ours[part], loop[part]
        print(f"{part}: kiln {sum(a.values())} operations, hand loop {sum(b.values())}")
        for name in sorted(set(a) | set(b)):
            if a[name] != b[name]:
                print(f"  {name:45s} kiln {a[name]:4d}   hand loop {b[name]:4d}")


if __name__ == "__main__":
    main()
