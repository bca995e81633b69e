"""Trials: one evaluation of the objective at one point of the search space."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.tune._client import RemoteStudy
    from kiln.tune._study import Study


class TrialState(StrEnum):
    PENDING = "pending"  # asked for, not started
    RUNNING = "running"  # being evaluated
    COMPLETED = "completed"  # told its values
    FAILED = "failed"  # raised, or returned values that are not finite numbers
    PRUNED = "pruned"  # stopped early by the study's pruner
    STALE = "stale"  # its worker went away (no heartbeat) before it finished

    @property
    def finished(self) -> bool:
        return self not in (TrialState.PENDING, TrialState.RUNNING)


class TrialPruned(Exception):
    """Raised by `Trial.report` when the pruner stops the trial; `Study.optimize` records the
    trial as pruned. In an ask/tell loop, catch it and `study.tell(trial, state="pruned")`."""


@dataclass
class Trial:
    """`params` is a dict of parameter values; `values` holds every metric it was told;
    `system` is what the sampler that suggested it keeps with it (JSON values)."""

    number: int
    params: dict[str, Any]
    state: TrialState = TrialState.PENDING
    values: dict[str, float] = field(default_factory=dict)
    intermediate: dict[int, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.time)
    finished: float | None = None
    system: dict[str, Any] = field(default_factory=dict)
    _study: Study | RemoteStudy | None = field(default=None, repr=False, compare=False)

    def report(self, step: int, values: dict[str, float] | float) -> None:
        """Record intermediate objective values at `step` (an epoch, say); raises `TrialPruned`
        when the study's pruner decides this trial should stop."""
        if self._study is None:
            raise RuntimeError(f"Trial {self.number} belongs to no study; report() needs one.")
        self._study._report(self, step, values)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if f.name != "_study"}  # fmt: skip
        data["state"] = self.state.value
        data["intermediate"] = {str(k): v for k, v in self.intermediate.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        data = dict(data)
        data["state"] = TrialState(data["state"])
        data["intermediate"] = {int(k): v for k, v in data.get("intermediate", {}).items()}
        return cls(**data)
