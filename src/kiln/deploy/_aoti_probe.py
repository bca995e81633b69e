"""``python -m kiln.deploy._aoti_probe [--graphs] DEVICE DTYPE [PACKAGE SHAPE]...``: load and
run packages.

Loading a package runs torch's C++ loader, which has crashed the whole process (SIGSEGV) for
packages that built fine (torch 2.11 + CUDA 13 on an H100). ``kiln.deploy.optimize`` first loads
its packages here, in a process of its own, and runs each once on zeros of its input ``SHAPE``
(e.g. ``8,3,224,224``), with ``--graphs`` captured in a CUDA graph and replayed as the engine
will run them: a crash or a faulting kernel then costs a warning and an in-process compile, not
the user's process. Exits 0 when every package ran.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import torch

from kiln.deploy._aoti import load_package
from kiln.deploy._builds import worker_env
from kiln.deploy._check import strict_fp32
from kiln.deploy._cuda_graph import GraphRunner, Runner

# import torch, initialize CUDA, load and run each package: seconds, tens of them for big models
TIMEOUT_S = 300.0


def probe_packages(
    paths: dict[int, Path], device: torch.device, examples: dict[int, torch.Tensor],
    *, graphs: bool = False, timeout: float = TIMEOUT_S,
    _program: tuple[str, ...] = ("-m", "kiln.deploy._aoti_probe"),
) -> str | None:  # fmt: skip
    """None when a fresh process loads and runs the packages at ``paths`` (batch size -> file)
    on zeros shaped and typed like ``examples[size]`` (``graphs``: each captured in a CUDA
    graph and replayed); else why not, in a few words."""
    dtype = str(next(iter(examples.values())).dtype).removeprefix("torch.")
    command = [sys.executable, *_program, *(["--graphs"] if graphs else []), str(device), dtype]
    for size, path in paths.items():
        command += [str(path), ",".join(map(str, examples[size].shape))]
    try:
        done = subprocess.run(command, env=worker_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"loading them did not finish in {timeout:.0f} s in a probe process"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        signal_name = _signal_name(-done.returncode)
        return f"loading them crashed a probe process (exit code {done.returncode}: {signal_name})"
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    last = lines[-1][:300] if lines else "no output"
    return f"loading them failed in a probe process (exit code {done.returncode}: {last})"


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    text = signal.strsignal(number)
    return f"{name}, {text[0].lower()}{text[1:]}" if text else name


def main(argv: list[str]) -> int:
    graphs = argv[:1] == ["--graphs"]
    argv = argv[1:] if graphs else argv
    device, dtype = torch.device(argv[0]), getattr(torch, argv[1])
    runners: list[Runner] = []  # alive until the kernels have run
    pool = None  # the engine's graphs share one memory pool: so do these
    with strict_fp32(benchmark=True), torch.no_grad():  # the flags optimize runs them with
        for path, shape in zip(argv[2::2], argv[3::2], strict=True):
            x = torch.zeros([int(n) for n in shape.split(",")], dtype=dtype, device=device)
            run = load_package(Path(path), device)
            if graphs:
                run = graphed = GraphRunner(run, x, pool)
                pool = graphed.pool
            runners.append(run)
            run(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # a faulting kernel reports here
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
