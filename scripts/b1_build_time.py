"""Why ResNet-50's batch-1 package takes minutes to build once ``TritonConv`` has run.

On 2026-11-28 (H200) the package of the fused fp16 graph built in 8-17 s, and the same graph
with kiln's Triton convolutions in 23-316 s; in one ``inference.py`` run its in-process
(``compile="jit"``) build had not finished after 150 s, where ``b1_launch_check.py``'s took 7 s.
The first build of a process was the slow one more often than not. This script builds the two
graphs in process, in the order ``--order`` gives (each name may come back), and for each:

- times ``torch.export``, the in-process compile (``jit_compile``, first call), the package
  build in this process (``aoti_compile_and_package``, as ``optimize`` builds one batch size)
  and in a fresh worker process (as it builds several), and the package's cold start in a
  fresh process (load, one call);
- dumps every thread's stack every ``--stacks`` seconds of the package builds into
  ``$OUT/stacks_<n>_<name>.txt`` and ``$OUT/worker_<n>_<name>/batch_1.log`` (where a slow
  build spends its time);
- prints Inductor's own phase times (``torch._dynamo.utils.compile_times``) after each build.

    python scripts/b1_build_time.py --order triton,plain,triton   # on a GPU
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kiln import zoo  # noqa: E402
from kiln.deploy._aoti import inductor_options, jit_compile  # noqa: E402
from kiln.deploy._builds import _run_all  # noqa: E402
from kiln.deploy._capture import capture, eval_mode  # noqa: E402
from kiln.deploy._check import strict_fp32  # noqa: E402
from kiln.deploy._conv_b1 import TritonConv  # noqa: E402
from kiln.deploy._fold import FoldBatchNorm  # noqa: E402
from kiln.deploy._fuse_conv import FuseConvReLU, register_operators  # noqa: E402
from kiln.deploy._passes import ChannelsLast  # noqa: E402
from kiln.deploy._precision import Precision  # noqa: E402

OUT = Path(os.environ.get("OUT", "."))
COLD = """
import sys, time; t0 = time.perf_counter()
import torch; sys.path.insert(0, sys.argv[2])
from kiln.deploy._aoti import load_package
from pathlib import Path
run = load_package(Path(sys.argv[1]), torch.device("cuda"))
t1 = time.perf_counter()
run(torch.randn(1, 3, 224, 224, device="cuda"))
torch.cuda.synchronize()
print(f"COLD {{\\"load_s\\": {t1 - t0:.2f}, \\"first_call_s\\": {time.perf_counter() - t1:.2f}}}")
"""


def build(name: str, module: torch.nn.Module, x1: torch.Tensor, index: int,
          stacks: float) -> dict[str, Any]:  # fmt: skip
    options = inductor_options(x1.device, 1, "none")
    row: dict[str, Any] = {}
    t0 = time.perf_counter()
    run = jit_compile(module, x1, options)
    with torch.no_grad():
        run(x1)
    torch.cuda.synchronize()
    row["jit_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    program = torch.export.export(module, (x1,))
    row["export_s"] = round(time.perf_counter() - t0, 1)
    path = Path(f"/tmp/b1_build_{index}_{name}.pt2")
    with open(OUT / f"stacks_{index}_{name}.txt", "w") as dump:
        faulthandler.dump_traceback_later(stacks, repeat=True, file=dump)
        t0 = time.perf_counter()
        try:
            with strict_fp32(), torch.no_grad():
                torch._inductor.aoti_compile_and_package(
                    program, package_path=str(path), inductor_configs=options
                )
        finally:
            faulthandler.cancel_dump_traceback_later()
    row["package_s"] = round(time.perf_counter() - t0, 1)
    row["package_mb"] = round(path.stat().st_size / 1e6, 1)
    # the same build in a fresh worker process (as optimize builds several sizes; one size
    # builds in process, as above), its output and stacks kept
    os.environ["KILN_BUILD_LOGS"] = str(OUT / f"worker_{index}_{name}")
    os.environ["KILN_BUILD_STACKS"] = str(stacks)
    saved = Path(f"/tmp/b1_worker_{index}_{name}.program.pt2")
    torch.export.save(program, str(saved))
    command = [sys.executable, "-m", "kiln.deploy._aoti_worker", str(saved), json.dumps(options),
               f"/tmp/b1_worker_{index}_{name}.pt2"]  # fmt: skip
    t0 = time.perf_counter()
    _run_all({1: command}, set(), jobs=1)
    row["worker_package_s"] = round(time.perf_counter() - t0, 1)
    done = subprocess.run([sys.executable, "-c", COLD, str(path), str(ROOT / "src")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    line = next((s for s in done.stdout.splitlines() if s.startswith("COLD ")), None)
    row["cold"] = json.loads(line[5:]) if line else done.stderr[-400:]
    print(f"{index} {name}", json.dumps(row), flush=True)
    print(torch._dynamo.utils.compile_times(repr="str", aggregate=True), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", default="triton,plain,triton,plain")
    parser.add_argument("--stacks", type=float, default=15.0, help="seconds between dumps")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    register_operators()
    device = torch.device("cuda")
    model = eval_mode(zoo.create_model("resnet50")).to(device)
    x = torch.randn(2, 3, 224, 224, device=device)
    x1 = x[:1].contiguous()
    fused = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast(), FuseConvReLU()):
        fused = p.apply(fused)
    t0 = time.perf_counter()
    triton_pass = TritonConv()
    modules = {"plain": fused, "triton": triton_pass.apply(fused)}
    print("TritonConv", json.dumps(triton_pass.describe()),
          f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    rows = []
    for index, name in enumerate(args.order.split(",")):
        rows.append({"name": name, **build(name, modules[name], x1, index, args.stacks)})
        # after each build: a run cut short by its time limit keeps the builds it finished
        (OUT / "b1_build_time.json").write_text(json.dumps(rows, indent=1))
    print("\n" + "\n".join(json.dumps(r) for r in rows))


if __name__ == "__main__":
    main()
