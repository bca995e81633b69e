"""Workers for `Study.optimize` (and a remote study's): threads, or one process per GPU.

Every worker is a thread of the calling process that asks the study for a trial, runs it and
tells the result, while a `Heartbeat` thread keeps the running trials alive. In process mode the
thread hands the trial to its own child process (spawned, with its own CUDA_VISIBLE_DEVICES) and
relays `trial.report` calls, so the study, its sampler and its pruner live in one place and need
no locking across processes. A child says when it is ready: once its objective is unpickled and,
when the objective has a `setup()` method, set up (data loaded, CUDA started), and again after
each trial once the trial's garbage is collected. Its worker asks for a trial only then, so a
trial's time is its own work, not a process starting or the last trial's cleanup.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kiln.tune._heartbeat import Heartbeat
from kiln.tune._trial import Trial, TrialPruned, TrialState

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


class Driven(Protocol):
    """What workers need of a study: `Study` in this process, or a `RemoteStudy` over HTTP."""

    stale_after: float

    def ask(self) -> Trial: ...

    def heartbeat(self, *trials: Trial | int) -> None: ...

    def _report(self, trial: Trial, step: int, values: dict[str, float] | float) -> None: ...

    def tell(
        self, trial: Trial | int, values: Any = None, *, state: Any = None, error: str | None = None
    ) -> Trial: ...


def finish(study: Driven, trial: Trial, outcome: str, payload: Any) -> None:
    """Tell ``study`` how a worker's trial ended: "done" (payload: its values), "pruned", or
    "failed" (payload: the error)."""
    if outcome == "done":
        study.tell(trial, payload)
    elif outcome == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAILED, error=str(payload))


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_env(index: int, gpus: int) -> dict[str, str]:
    """Environment of worker `index`: the `index % gpus`-th GPU this process sees, alone, or
    one CPU thread per worker when there are no GPUs (the workers share the cores).

    A parent started with CUDA_VISIBLE_DEVICES="2,3" sees its GPUs as 0 and 1; its workers get
    "2" and "3", the parent's own entries, not 0 and 1 (other users' GPUs)."""
    if gpus > 0:
        visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
        visible = [d for d in visible if d]
        if len(visible) >= gpus:
            return {"CUDA_VISIBLE_DEVICES": visible[index % gpus]}
        return {"CUDA_VISIBLE_DEVICES": str(index % gpus)}
    return {"OMP_NUM_THREADS": "1"}


def run_workers(
    study: Driven, fn: Callable[[Trial], Any], trials: int, workers: int | None,
    processes: bool | None, stop: Callable[[], bool] | None = None,
) -> None:  # fmt: skip
    gpus = gpu_count()
    workers = workers or max(1, gpus)
    processes = gpus > 0 if processes is None else processes
    left = [int(trials)]
    budget = threading.Lock()

    def take() -> bool:
        with budget:
            if stop is not None and left[0] > 0 and stop():
                left[0] = 0
            left[0] -= 1
            return left[0] >= 0

    errors: list[BaseException] = []
    setup = getattr(fn, "setup", None)
    if not processes and callable(setup):
        setup()  # thread workers share this process's objective: set it up once

    def loop(index: int) -> None:
        child = None
        try:
            child = _Child(fn, worker_env(index, gpus)) if processes else None
            while not errors and take():
                if child is not None:
                    child.wait_ready()
                trial = study.ask()
                with beats.running(trial.number):
                    if child is None:
                        run_local(study, fn, trial)
                    else:
                        child.run(study, trial)
        except BaseException as e:  # the study itself broke (not a trial): stop every worker
            errors.append(e)
        finally:
            if child is not None:
                child.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(workers)]
    with Heartbeat(lambda numbers: study.heartbeat(*numbers), study.stale_after / 4) as beats:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def run_local(study: Driven, fn: Callable[[Trial], Any], trial: Trial) -> None:
    try:
        result = fn(trial)
    except TrialPruned:
        finish(study, trial, "pruned", None)
    except Exception:
        finish(study, trial, "failed", traceback.format_exc())
    else:
        finish(study, trial, "done", result)


class _RemoteTrial(Trial):
    """The trial a child process sees: `report` asks the parent whether to stop."""

    _conn: Connection | None = None

    def report(self, step: int, values: dict[str, float] | float) -> None:
        assert self._conn is not None
        self._conn.send(("report", step, values))
        verdict, message = self._conn.recv()
        if verdict == "prune":
            raise TrialPruned(message)
        if verdict == "error":
            raise ValueError(message)


def _child_main(conn: Connection, env: dict[str, str], fn_bytes: bytes) -> None:
    os.environ.update(env)  # before anything in fn can touch CUDA
    try:
        fn = pickle.loads(fn_bytes)
        setup = getattr(fn, "setup", None)
        if callable(setup):
            setup()
    except BaseException:
        conn.send(("ready", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while (job := conn.recv()) is not None:
        number, params = job
        trial = _RemoteTrial(number, params)
        trial._conn = conn
        result = None
        try:
            result = fn(trial)
        except TrialPruned:
            conn.send(("pruned", None))
        except Exception:
            conn.send(("failed", traceback.format_exc()))
        else:
            conn.send(("done", result))
        # the finished trial's model, optimizer and CUDA graphs, often held in reference cycles
        # (a pruned trial's traceback), leave the device before the next trial starts
        del trial, result
        gc.collect()
        conn.send(("ready", None))


class _Child:
    def __init__(self, fn: Callable[[Trial], Any], env: dict[str, str]) -> None:
        try:
            self._fn_bytes = pickle.dumps(fn)
        except Exception as e:
            raise TypeError(
                "Worker processes need a picklable objective (a module-level function). "
                f"Received: {fn!r} ({e})"
            ) from e
        self._env = env
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child_conn, self._env, self._fn_bytes),
                                 daemon=True)  # fmt: skip
        self._proc.start()
        self._ready = False
        self._starting = True  # until it has loaded the objective once

    def wait_ready(self) -> None:
        """Block until the child has loaded (and set up) the objective, or cleaned up after its
        last trial. A child that cannot load it is a bug in the objective, not a failed trial:
        raise with its traceback. One that dies after its trial is restarted."""
        if self._ready:
            return
        try:
            _, error = self._conn.recv()
        except EOFError:
            if not self._starting:  # it died cleaning up after a trial: start a fresh one
                self._start()
                return self.wait_ready()
            error = f"it exited with code {self._exit_code()} before saying so"
        if error is not None:
            raise RuntimeError(
                "A worker process could not load the objective (unpickle it and call its "
                f"setup(), if it has one):\n{error}"
            )
        self._ready, self._starting = True, False

    def _exit_code(self) -> int | None:
        """The dead child's exit code: its pipe closes a moment before it can be reaped."""
        self._proc.join(timeout=10)
        return self._proc.exitcode

    def run(self, study: Driven, trial: Trial) -> None:
        self._conn.send((trial.number, trial.params))
        while True:
            try:
                message = self._conn.recv()
            except EOFError:  # the child died (out of memory, a segfault): restart it
                code = self._exit_code()
                self._start()
                finish(study, trial, "failed", f"worker process died (exit code {code})")
                return
            if message[0] != "report":
                self._ready = False  # until the child has cleaned up after the trial
                finish(study, trial, message[0], message[1])
                return
            try:
                study._report(trial, message[1], message[2])
                self._conn.send(("continue", None))
            except TrialPruned as e:
                self._conn.send(("prune", str(e)))
            except ValueError as e:
                self._conn.send(("error", str(e)))

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
