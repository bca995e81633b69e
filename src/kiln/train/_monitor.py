"""The monitored metric of a callback: which log key, which direction, and when it improved."""

from __future__ import annotations

import math
import warnings

from kiln.train._callback import Logs, monitor_improved, resolve_mode


class Monitor:
    """Reads ``name`` from epoch logs and compares it with a best value.

    A missing key warns once per ``Monitor`` (not every epoch), naming the keys that do exist.
    """

    def __init__(self, owner: str, name: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        self.owner = owner
        self.name = name
        self.mode = resolve_mode(name, mode)
        self.min_delta = abs(min_delta)
        self._warned = False

    @property
    def worst(self) -> float:
        """The starting 'best': anything finite improves on it."""
        return math.inf if self.mode == "min" else -math.inf

    def read(self, logs: Logs | None) -> float | None:
        value = (logs or {}).get(self.name)
        if value is None and not self._warned:
            self._warned = True
            keys = ", ".join(logs or {}) or "(none)"
            warnings.warn(
                f"{self.owner} monitors {self.name!r}, which is not in the logs; available keys: "
                f"{keys}. Pass monitor= one of them (val_* keys need validation data).",
                stacklevel=3,
            )
        return None if value is None else float(value)

    def improved(self, value: float, best: float, min_delta: float | None = None) -> bool:
        delta = self.min_delta if min_delta is None else min_delta
        return monitor_improved(value, best, self.mode, delta)
