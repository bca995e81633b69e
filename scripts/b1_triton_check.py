"""ResNet-50 at batch 1 with ``TritonConv``: eager, torch.compile and an AOTInductor package,
with and without split-K configs, each against the fp16 graph it rewrote (cuDNN's calls).

A diagnostic. On 2026-11-28 (H200), with ``kiln::conv2d_b1`` a ``torch.library.triton_op``
(Inductor compiling the kernel into the package), eager and torch.compile matched cuDNN (rel
err 3.2-3.9e-4) and the package did not (5.8e-2, split-K or not); the script keeps each
package's generated C++ in $OUT. As an opaque custom op (now) the package matches (6.0e-4).

    python scripts/b1_triton_check.py   # on a GPU
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kiln import zoo  # noqa: E402
from kiln.deploy._aoti import build_package, inductor_options, jit_compile, load_package  # noqa: E402
from kiln.deploy._capture import capture, eval_mode  # noqa: E402
from kiln.deploy._check import error  # noqa: E402
from kiln.deploy._conv_b1 import TritonConv, _tune  # noqa: E402
from kiln.deploy._fold import FoldBatchNorm  # noqa: E402
from kiln.deploy._fuse_conv import FuseConvReLU  # noqa: E402
from kiln.deploy._passes import ChannelsLast  # noqa: E402
from kiln.deploy._precision import Precision  # noqa: E402


def _keep_sources(path: Path, name: str) -> None:
    """The package's generated C++ wrapper and kernel sources, into $OUT (to read the calls)."""
    import os
    import zipfile

    out = os.environ.get("OUT")
    if not out:
        return
    with zipfile.ZipFile(path) as archive:
        for entry in archive.namelist():
            if entry.endswith(".cpp") and archive.getinfo(entry).file_size < 4_000_000:
                target = Path(out) / f"{name}_{Path(entry).name}"
                target.write_bytes(archive.read(entry))


def main() -> None:
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = eval_mode(zoo.create_model("resnet50")).to(device)
    x = torch.randn(2, 3, 224, 224, device=device)
    module = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast(), FuseConvReLU()):
        module = p.apply(module)
    x1 = x[:1].contiguous()
    with torch.no_grad():
        reference = module(x1).float()
    tuned: dict[int, Any] = {}

    def tune(layer: dict[str, Any]) -> Any:
        found = _tune(layer, 20)
        tuned[id(layer)] = found
        return found

    def no_split(layer: dict[str, Any]) -> Any:
        config, cudnn, us = _tune(layer, 5)
        return (dataclasses.replace(config, split_k=1) if config else None), cudnn, us

    results: dict[str, Any] = {}
    for name, tuner in (("split", tune), ("nosplit", no_split)):
        started = time.perf_counter()
        triton_pass = TritonConv(tune=tuner)
        replaced = triton_pass.apply(module)
        row: dict[str, Any] = {
            **triton_pass.describe(),
            "pass_s": round(time.perf_counter() - started, 1),
        }
        with torch.no_grad():
            row["eager"] = float(f"{error(replaced(x1), reference)[1]:.3g}")
            try:
                run = jit_compile(replaced, x1, inductor_options(device, 1, "none"))
                row["jit"] = float(f"{error(run(x1), reference)[1]:.3g}")
            except Exception as e:
                row["jit"] = f"{type(e).__name__}: {str(e)[:300]}"
            try:
                path = build_package(replaced, x1, Path(f"/tmp/b1_check_{name}.pt2"),
                                     inductor_options(device, 1, "none"))  # fmt: skip
                run = load_package(path, device)
                row["aoti"] = float(f"{error(run(x1), reference)[1]:.3g}")
                row["aoti_again"] = float(f"{error(run(x1), reference)[1]:.3g}")
                _keep_sources(path, name)
            except Exception as e:
                row["aoti"] = f"{type(e).__name__}: {str(e)[:300]}"
        results[name] = row
        print(name, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
