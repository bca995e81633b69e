"""Build the AOTInductor packages of several batch sizes, in parallel processes on a GPU box.

Compiling ResNet-50 for one batch size takes about a minute of mostly CPU work (Inductor,
Triton, the C++ wrapper), so the batch sizes build in worker processes side by side: each
static program is exported here, saved, and compiled by ``python -m kiln.deploy._aoti_worker``.
Autotuned builds time kernels on the GPU, so at most one of them runs at a time (a second would
disturb its measurements); the others only compile and run beside it. The autotuned builds start
first, then the rest largest batch first: the slowest builds start earliest. Each start and end
is reported to a ``Progress`` with the builds still running.

A worker's output is shown where its build fails. ``KILN_BUILD_LOGS=<folder>`` keeps every
worker's output there (``batch_<size>.log``), and ``KILN_BUILD_STACKS=<seconds>`` prints the
stacks of a build (in a worker, or here with one batch size or ``jobs=1``) that often to
stderr: for a build that takes longer than it should.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kiln.deploy._aoti import build_package
from kiln.deploy._progress import Progress, watching


def default_jobs(device: torch.device, count: int) -> int:
    """Parallel builds: on a GPU, one per 4 CPU cores (Inductor compiles each build's kernels
    in a pool of its own); on a CPU, one (the C++ build uses every core)."""
    if device.type != "cuda":
        return 1
    return max(1, min(count, (os.cpu_count() or 1) // 4))


def build_packages(
    modules: dict[int, nn.Module], examples: dict[int, torch.Tensor],
    options: dict[int, dict[str, Any]], folder: Path, jobs: int, progress: Progress | None = None,
) -> dict[int, Path]:  # fmt: skip
    """One package per batch size in ``folder``, of ``modules[size]`` (one module may serve
    several sizes) for ``examples[size]`` (that many rows), with the Inductor configuration
    ``options[size]``."""
    progress = progress or Progress(enabled=False)
    paths = {size: folder / f"batch_{size}.pt2" for size in examples}
    tuned = {size for size in examples if options[size].get("max_autotune")}
    if jobs <= 1 or len(examples) == 1:
        board = Board(progress, tuned)
        for size in build_order(list(examples), tuned):
            board.started(size)
            with watching():
                build_package(modules[size], examples[size], paths[size], options[size])
            board.done(size)
        return paths
    commands = {}
    with progress.phase("export_static", f"exporting {len(examples)} static programs"):
        for size, x in examples.items():
            program = folder / f"batch_{size}.program.pt2"
            with warnings.catch_warnings():
                # channels_last weights are not contiguous, so torch finds no "complete" tensor
                # in their storage groups and saves each group's first tensor with its whole
                # storage: right for weights of their own, as the passes leave them
                warnings.filterwarnings("ignore", "No complete tensor found in the group")
                torch.export.save(torch.export.export(modules[size], (x,)), str(program))
            commands[size] = [sys.executable, "-m", "kiln.deploy._aoti_worker", str(program),
                              json.dumps(options[size]), str(paths[size])]  # fmt: skip
    _run_all(commands, tuned, jobs, Board(progress, tuned))
    for size in examples:
        (folder / f"batch_{size}.program.pt2").unlink(missing_ok=True)
    return paths


def build_order(sizes: list[int], tuned: set[int]) -> list[int]:
    """Autotuned builds first (the longest), then the others largest first."""
    return sorted(sizes, key=lambda s: (s not in tuned, -s))


class Board:
    """Reports each build's start and end (with its seconds) and what still runs."""

    def __init__(self, progress: Progress, tuned: set[int]) -> None:
        self.progress, self.tuned = progress, tuned
        self.running: dict[int, float] = {}

    def started(self, size: int) -> None:
        self.running[size] = time.perf_counter()
        kind = "max-autotune" if size in self.tuned else "no autotune"
        self.progress.log(f"batch {size}: package build started ({kind}); "
                          f"running: {self._running()}")  # fmt: skip
        self.progress.status(f"building packages for batch {self._running()}")

    def done(self, size: int) -> None:
        seconds = time.perf_counter() - self.running.pop(size)
        self.progress.record(f"package_{size}", seconds)
        self.progress.log(f"batch {size}: package built in {seconds:.1f} s; "
                          f"still running: {self._running() or 'none'}")  # fmt: skip
        self.progress.status(f"building packages for batch {self._running()}")

    def _running(self) -> str:
        now = time.perf_counter()
        return ", ".join(f"{s} ({now - t:.0f} s)" for s, t in self.running.items())


def _run_all(commands: dict[int, list[str]], tuned: set[int], jobs: int,
             board: Board | None = None) -> None:  # fmt: skip
    """Run ``commands`` with at most ``jobs`` at once and one of ``tuned`` at a time."""
    board = board or Board(Progress(enabled=False), tuned)
    pending = build_order(list(commands), tuned)
    running: dict[int, tuple[subprocess.Popen[bytes], Any]] = {}
    env = worker_env()
    try:
        while pending or running:
            for size in _startable(pending, running, tuned, jobs):
                pending.remove(size)
                # a file, not a pipe: a chatty build never blocks; closed when it ends
                log = tempfile.TemporaryFile()  # noqa: SIM115
                process = subprocess.Popen(commands[size], env=env, stdout=log,
                                           stderr=subprocess.STDOUT)  # fmt: skip
                running[size] = (process, log)
                board.started(size)
            time.sleep(0.2)
            for size, (process, log) in list(running.items()):
                if process.poll() is not None:
                    del running[size]
                    _finished(size, process.returncode, log)
                    board.done(size)
    finally:
        for process, log in running.values():
            process.kill()
            process.wait()
            log.close()


def worker_env() -> dict[str, str]:
    """This environment, with this kiln first on the path: a worker imports the same code."""
    path = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _startable(pending: list[int], running: dict[int, Any], tuned: set[int],
               jobs: int) -> list[int]:  # fmt: skip
    start: list[int] = []
    tuning = any(s in tuned for s in running)
    for size in pending:
        if len(running) + len(start) >= jobs:
            break
        if size in tuned and (tuning or any(s in tuned for s in start)):
            continue
        start.append(size)
    return start


def _finished(size: int, returncode: int, log: Any) -> None:
    """A build's end: its output kept in ``$KILN_BUILD_LOGS/batch_<size>.log`` where that is
    set, and an error with the output's end where the build failed."""
    with log:
        log.seek(0)
        output = log.read().decode(errors="replace")
    if folder := os.environ.get("KILN_BUILD_LOGS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"batch_{size}.log").write_text(output)
    if returncode != 0:
        raise RuntimeError(
            f"AOTInductor build for batch size {size} failed (exit code {returncode}). "
            f"Its output ends with:\n{output[-3000:]}\nRetry with jobs=1 to build in this process."
        )
