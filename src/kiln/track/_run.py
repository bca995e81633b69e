"""``Run``: the handle a training process logs through (metrics batched off the caller's thread)."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kiln.track._recorder import Recorder
from kiln.track._records import ArtifactInfo, MetricPoint, RunInfo

if TYPE_CHECKING:
    from kiln.track._store import Store


class Run:
    """A running run of ``store``; made by ``Store.create_run``. Use it as a context manager,
    or call ``finish``: a process that exits without it marks its runs 'finished' (or
    'failed' after an uncaught exception); one killed outright reads as 'killed'."""

    def __init__(self, store: Store, run_id: int, *, flush_interval: float = 0.5) -> None:
        self.store, self.id = store, run_id
        self.finished = False
        self._recorder = Recorder(lambda points: store.write_metrics(run_id, points),
                                  flush_interval=flush_interval, name=str(run_id))  # fmt: skip
        _open_runs.add(self)
        _install_exit_hooks()

    def __repr__(self) -> str:
        return f"Run(id={self.id}, store={self.store!r})"

    def log_metrics(
        self, metrics: Mapping[str, float], step: int, epoch: int | None = None
    ) -> None:
        """Queue ``{key: value}`` at ``step`` (and ``epoch``); returns at once."""
        now = time.time()
        points = [MetricPoint(str(k), int(step), epoch, _float(v), now) for k, v in metrics.items()]
        self._recorder.add(points)

    def log_artifact(
        self, source: str | os.PathLike[str] | bytes, name: str | None = None
    ) -> ArtifactInfo:
        """Store a file (or bytes under ``name``) with the run; synchronous."""
        return self.store.add_artifact(self.id, source, name)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued metrics are written; False if the store did not take them in time."""
        return self._recorder.flush(timeout)

    def finish(self, status: str = "finished", error: str | None = None, timeout: float = 30.0):
        """Write what is queued, then set the final status ('finished', 'failed', 'killed')."""
        if self.finished:
            return
        self.finished = True
        _open_runs.discard(self)
        self._recorder.close(timeout)
        try:
            self.store.set_status(self.id, status, error)
        except Exception as failure:  # the store is down: the run will read as killed
            import warnings

            warnings.warn(f"kiln.track: could not mark run {self.id} {status}: {failure}",
                          RuntimeWarning, stacklevel=2)  # fmt: skip

    def info(self) -> RunInfo:
        return self.store.get_run(self.id)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if value is None:
            self.finish("finished")
        else:
            status = "killed" if isinstance(value, KeyboardInterrupt) else "failed"
            self.finish(status, "".join(traceback.format_exception(kind, value, tb))[-4000:])


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric values must be numbers, received {value!r}") from None


_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_uncaught: list[str] = []
_hooks_lock = threading.Lock()
_hooks_installed = False


def _install_exit_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    previous = sys.excepthook

    def excepthook(kind: Any, value: Any, tb: Any) -> None:
        _uncaught.append("".join(traceback.format_exception(kind, value, tb))[-4000:])
        previous(kind, value, tb)

    sys.excepthook = excepthook
    atexit.register(_finish_open_runs)


def _finish_open_runs() -> None:
    for run in list(_open_runs):
        if _uncaught:
            run.finish("failed", _uncaught[-1], timeout=10)
        else:
            run.finish("finished", timeout=10)
