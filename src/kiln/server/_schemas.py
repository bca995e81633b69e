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
