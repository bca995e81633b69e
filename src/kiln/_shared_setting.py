"""A process-wide setting that several threads may hold at once, and that comes back after.

kiln changes a few process-wide settings while it trains (the layers' flag for the Trainer's
compiled step, Python's switch interval while a step compiles behind the training) and puts the
process's own value back afterwards. Saving and restoring around each use is wrong once two
threads overlap (a tuning study's thread workers each run fit()): the one that ends first puts
the old value back under the other, and the one that ends last "restores" the first one's
value, which then stays. Here the first holder saves the process's value and the last one to
leave restores it; while any holds it, the setting has the value it was held with (holders
should agree on it: the last to enter wins).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedSetting(Generic[T]):
    """``get``/``set`` read and write the setting; ``enter(value)`` and ``leave()`` (or the
    ``held(value)`` context) hold it."""

    def __init__(self, get: Callable[[], T], set: Callable[[T], None]) -> None:
        self._get, self._set = get, set
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: T | None = None

    def enter(self, value: T) -> None:
        with self._lock:
            if self._holders == 0:
                self._saved = self._get()
            self._holders += 1
            self._set(value)

    def leave(self) -> None:
        with self._lock:
            if self._holders == 0:
                raise RuntimeError("SharedSetting.leave() without a matching enter()")
            self._holders -= 1
            if self._holders == 0:
                self._set(self._saved)  # type: ignore[arg-type]
                self._saved = None

    @contextmanager
    def held(self, value: T) -> Iterator[None]:
        self.enter(value)
        try:
            yield
        finally:
            self.leave()

    @property
    def holders(self) -> int:
        return self._holders
