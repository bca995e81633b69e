"""How the interpreter's switch interval shares Python between a compile and the training beside it.

While kiln compiles a small model's step behind the training (``train._compile_behind``), the
training thread replays the eager step's CUDA graph: a few tiny torch calls a step, each of
which lets go of the interpreter lock, and Dynamo's trace in the other thread takes it. How long
the training thread then waits is the switch interval (``CompileBehind.SWITCH_INTERVAL``). On an
H200, 466 such steps took 1.55 s beside the compile at 0.5 ms against about 0.2 s alone
(BENCHMARKS.md, tenth session).

This is a CPU stand-in for that: a thread compiles a 12-block MLP (Dynamo and AOTAutograd, the
part that holds the lock; no Inductor, so no compile workers), while the main thread loops over
eight tiny in-place torch calls, each interval in a fresh process. It prints the compile's time,
the loop's time per step beside it and alone, for each interval. It needs no GPU.

    python benchmarks/compile_behind_gil.py --intervals-ms 5,0.5,0.1,0.02
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, threading, time
import torch
import torch.nn as nn
import torch._dynamo
import torch._functorch.aot_autograd  # imported before the timing, as fit() has by then
torch.set_num_threads(1)
interval = float(sys.argv[1]) / 1000
model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.LayerNorm(64))
                        for _ in range(12)])
x = torch.randn(32, 64)
done, took = threading.Event(), []

def compile_behind():
    start = time.perf_counter()
    torch.compile(model, backend="aot_eager")(x).sum().backward()
    took.append(time.perf_counter() - start)
    done.set()

a, b, c = torch.zeros(128), torch.ones(128), torch.zeros(4)

def step():  # about the torch calls a replayed step makes: copies in, counters
    a.copy_(b); c.add_(1); a.mul_(1.0); b.add_(0.0); c.zero_(); a.copy_(b); c.add_(1); b.copy_(a)

saved = sys.getswitchinterval()
sys.setswitchinterval(interval)
thread = threading.Thread(target=compile_behind)
thread.start()
steps, start = 0, time.perf_counter()
while not done.is_set():
    step()
    steps += 1
beside = (time.perf_counter() - start) / max(steps, 1)
thread.join()
sys.setswitchinterval(saved)
start = time.perf_counter()
for _ in range(2000):
    step()
alone = (time.perf_counter() - start) / 2000
print(json.dumps({"compile_s": took[0], "steps": steps, "beside_us": beside * 1e6,
                  "alone_us": alone * 1e6}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intervals-ms", default="5,0.5,0.1,0.02")
    args = parser.parse_args()
    env_note = "fresh process per interval, Inductor's caches not involved (aot_eager)"
    print(f"{'interval':>10} {'compile':>9} {'steps beside':>13} {'us/step beside':>15} "
          f"{'us/step alone':>14}   ({env_note})")  # fmt: skip
    for value in args.intervals_ms.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, value], capture_output=True,
                             text=True, timeout=300, check=True)  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{float(value):>8.3f}ms {r['compile_s']:>8.2f}s {r['steps']:>13,} "
              f"{r['beside_us']:>15,.0f} {r['alone_us']:>14,.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
