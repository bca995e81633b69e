"""What the store returns: plain, typed, JSON-ready records (no database session attached)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["running", "finished", "failed", "killed"]
STATUSES: tuple[str, ...] = ("running", "finished", "failed", "killed")


class RunNotFoundError(KeyError):
    """No run with that id in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    status: str  # as read: a 'running' run whose process is gone reads as 'killed'
    config: dict[str, Any]
    system: dict[str, Any]
    summary: dict[str, Any]  # the last value of each metric
    pid: int | None
    host: str | None
    started_at: float
    heartbeat_at: float
    ended_at: float | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Series:
    """One metric's points, column by column (what a chart library wants)."""

    step: list[int] = field(default_factory=list)
    epoch: list[int | None] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    total: int = 0  # points stored, before downsampling

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ArtifactInfo:
    run_id: int
    name: str
    size: int
    media_type: str
    sha256: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MetricPoint:
    key: str
    step: int
    epoch: int | None
    value: float | None
    wall_time: float
