"""The REST API's response shapes (pydantic), which also make its OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RunOut(BaseModel):
    id: int
    name: str
    status: str = Field(description="running, finished, failed or killed (a dead process)")
    config: dict[str, Any]
    system: dict[str, Any]
    summary: dict[str, Any] = Field(description="the last value of each metric")
    pid: int | None
    host: str | None
    started_at: float
    heartbeat_at: float
    ended_at: float | None
    error: str | None


class ArtifactOut(BaseModel):
    run_id: int
    name: str
    size: int
    media_type: str
    sha256: str
    created_at: float


class RunDetailOut(RunOut):
    metric_keys: list[str]
    artifacts: list[ArtifactOut]


class RunsOut(BaseModel):
    runs: list[RunOut]


class SeriesOut(BaseModel):
    step: list[int]
    epoch: list[int | None]
    value: list[float | None]
    wall_time: list[float]
    total: int = Field(description="points stored, before downsampling")


class MetricsOut(BaseModel):
    run_id: int
    metrics: dict[str, SeriesOut]


class ErrorOut(BaseModel):
    error: str
    detail: Any = None


class ExperimentIn(BaseModel):
    """A new study: `kiln.tune.Study.config()`'s JSON form, and a name."""

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$",
        description="letters, digits, '_', '.', '-'; generated if absent",
    )
    space: dict[str, Any] = Field(
        description='kiln.tune.Space JSON: {"params": {name: '
        '{"type": "Float", "low": 0, "high": 1, "log": false}}, '
        '"fixed": {...}, "linear_constraints": [...]}'
    )
    objectives: dict[str, str] = Field(description='{metric: "max" or "min"}')
    constraints: dict[str, list[Any]] = Field({}, description='{metric: ["<=" or ">=", bound]}')
    thresholds: dict[str, float] = Field({}, description="{objective: worst value worth having}")
    sampler: dict[str, Any] | None = Field(
        None, description='{"type": "Bayes" (default), "Sobol" or "Random", "seed": 0, ...}'
    )
    pruner: dict[str, Any] | None = Field(
        None, description='{"type": "SuccessiveHalving", "min_step": 1, "reduction": 3} or null'
    )
    stale_after: float = Field(
        300.0,
        gt=0,
        description="seconds without a heartbeat after which a running suggestion reads as stale",
    )


class ExperimentOut(BaseModel):
    id: str = Field(description="the study's name")
    name: str
    space: dict[str, Any]
    objectives: dict[str, str]
    constraints: dict[str, list[Any]]
    thresholds: dict[str, float]
    sampler: dict[str, Any]
    pruner: dict[str, Any] | None
    stale_after: float
    trials: dict[str, int] = Field(description="how many trials are in each state")


class ExperimentsOut(BaseModel):
    experiments: list[ExperimentOut]


class TrialOut(BaseModel):
    """A suggestion (params to evaluate) and, once observed, its values."""

    id: int = Field(description="the trial's number in its study")
    params: dict[str, Any]
    state: str = Field(description="pending, running, stale, completed, failed or pruned")
    values: dict[str, float | None]
    intermediate: dict[str, dict[str, float | None]] = Field(description="reports by step")
    error: str | None
    started: float
    heartbeat: float
    finished: float | None


class TrialsOut(BaseModel):
    trials: list[TrialOut]


class ObservationIn(BaseModel):
    suggestion: int = Field(description="the id of the suggestion evaluated")
    values: dict[str, float] | float | None = Field(None, description="{metric: value}")
    failed: bool = False
    pruned: bool = False
    error: str | None = Field(None, max_length=100_000, description="why it failed")


class ReportIn(BaseModel):
    step: int = Field(ge=0)
    values: dict[str, float] | float


class ReportOut(BaseModel):
    prune: bool = Field(description="stop this trial, and observe it with pruned: true")
    message: str | None


class ParetoOut(BaseModel):
    trials: list[TrialOut] = Field(description="feasible completed trials no other dominates")
    hypervolume: float | None = Field(description="against the reference; null if none yet")
    reference: dict[str, float] | None = Field(description="thresholds, else inferred")


class HypervolumeOut(BaseModel):
    history: list[float] = Field(description="hypervolume after each trial")
    reference: dict[str, float] | None


class ImportanceOut(BaseModel):
    objective: str
    importance: dict[str, float] = Field(description="share of variance per parameter, 0 to 1")
