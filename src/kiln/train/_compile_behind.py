"""Training while torch.compile works: the eager step runs until the compiled one is ready.

Compiling LeNet-5's step took 14-17 s on an H100 with an empty compile cache and 3.5-4.5 s
with a warm one (importing Dynamo and Inductor, re-tracing, loading the cached kernels), while
its eager step captured in a CUDA graph trains an epoch in about 0.2 s (BENCHMARKS.md). So for
a small model, fit() need not wait: the compile runs in a thread of its own, on a copy of the
model and one batch (the copy keeps the run's weights and state untouched), and the training
steps meanwhile run the eager step. When the thread is done, the next step switches to the
compiled step: Dynamo guards on the model's structure, not on which module object it is, so
the graph traced for the copy serves the model itself without a second trace.

The thread holds Python's interpreter lock while Dynamo traces; the training loop needs it for
a moment each step, so the switch interval (how long a waiting thread waits before the holder
must let go) is shortened while the thread runs. fit() waits for the thread before it returns
(the settings it compiles under are fit()'s own), so a run shorter than the compile still
ends no later than it did before, and the next fit() starts compiled. Only Ctrl-C does not
wait: the thread goes on, and the next fit() takes its step.

Newer torch (2.13) holds ``torch.compiler.is_compiling()`` True for the whole process while
Dynamo compiles, so code that asks it in the training thread meanwhile (the epoch's short
batch, validation) takes its compiled-code branch eagerly. kiln's layers ask
``is_dynamo_compiling()``, which only a trace sees True (``layers._compiled_step``).
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from kiln._shared_setting import SharedSetting

Step = Callable[..., None]
# Python's switch interval, held short while any compile runs behind a training (two trainers
# in threads of one process may overlap: the last to finish puts the process's value back)
SWITCH_INTERVAL_SETTING = SharedSetting(sys.getswitchinterval, sys.setswitchinterval)


class CompileHere(Exception):
    """Raised by ``prepare`` when the compile cannot run behind the training (the model cannot
    be copied, say): the step switches at once and compiles on its first call, in the training
    thread, as it would without ``CompileBehind``. The message says why."""


# what ``prepare`` returns: the work for the thread, or None (not with this batch)
Prepare = Callable[..., Callable[[], None] | None]


class CompileBehind:
    """A training step that is ``eager`` until ``prepare``'s work, run in a thread, is done,
    then ``switch()``'s step. ``prepare(*batch)`` is called in the training thread for each
    batch until it returns the work (a zero-argument function: it compiles) or raises
    ``CompileHere`` (a warning says why; the switch is made then); ``ready()`` says
    when the eager step can share the process with the thread (a CUDA graph step: once its
    first graph is captured, since capturing must not overlap other threads' GPU work)."""

    # seconds a thread waits for the interpreter lock before its holder must release it while
    # the compile runs (Python's default: 0.005). At 0.5 ms, LeNet-5's replayed steps took
    # 3.3 ms each beside the compile on an H200, against 0.4 ms alone (BENCHMARKS.md, tenth
    # session). In a CPU stand-in (benchmarks/compile_behind_gil.py, 2026-11-28) 0.1 ms made
    # such steps 3.4x faster than 0.5 ms did, for a 13% longer trace; not yet measured on a GPU
    # (first_step_profile.py's "-si<ms>" runs)
    SWITCH_INTERVAL = 0.0001

    def __init__(
        self,
        eager: Step,
        prepare: Prepare,
        switch: Callable[[], Step],
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.step = eager
        self._prepare, self._switch, self._ready = prepare, switch, ready
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.eager_steps = 0  # steps run by the eager step
        self.switched = False

    def __call__(self, *batch: Any) -> None:
        if self._thread is not None and not self._thread.is_alive():
            self.finish()
        elif self._thread is None and not self.switched and self._ready():
            try:
                work = self._prepare(*batch)
            except CompileHere as reason:
                warnings.warn(f"{reason}; the step compiles now, before training goes on.",
                              stacklevel=2)  # fmt: skip
                self.finish()
            else:
                if work is not None:
                    self._start(work)
        if not self.switched:
            self.eager_steps += 1
        self.step(*batch)

    def finish(self, raise_error: bool = True) -> Step:
        """Wait for the compile, switch to its step and return it; raises what the compile
        raised (``raise_error=False``: drops it, and the compiled step meets it again on its
        first call). Without a compile started yet, the switch is made here (the compiled step
        then compiles on its first call, as it would without this class)."""
        if self.switched:
            return self.step
        if self._thread is not None:
            self._thread.join()
            SWITCH_INTERVAL_SETTING.leave()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error
        self.step, self.switched = self._switch(), True
        # let go of the eager step (its CUDA graphs and their memory pool), which the callables
        # may hold in their closures
        self._prepare, self._ready = _no_work, _never
        return self.step

    @property
    def compiling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # raised again in the training thread
                self._error = error

        SWITCH_INTERVAL_SETTING.enter(self.SWITCH_INTERVAL)
        self._thread = threading.Thread(target=run, name="kiln-compile", daemon=False)
        self._thread.start()


def _no_work(*batch: Any) -> None:
    return None


def _never() -> bool:
    return False
