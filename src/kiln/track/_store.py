"""``Store``: runs, metrics, artifacts and API tokens in one SQL database.

The contract (what every backend, SQLite and PostgreSQL, passes in tests/track): any number of
processes and threads may write to one store at once; each ``write_metrics`` call is one
transaction (all its points or none); reads never see half a batch. Methods raise
``RunNotFoundError`` for an unknown run id and SQLAlchemy errors when the database is down.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from kiln.track import _artifacts, _tokens
from kiln.track._downsample import series_rows
from kiln.track._liveness import HOST, effective_status
from kiln.track._migrate import make_engine, upgrade
from kiln.track._records import (
    STATUSES,
    ArtifactInfo,
    MetricPoint,
    RunInfo,
    RunNotFoundError,
    Series,
)
from kiln.track._schema import MetricRow, RunRow
from kiln.track._url import artifact_root, resolve_url

if TYPE_CHECKING:
    from kiln.track._run import Run

SORTABLE = ("id", "name", "status", "started_at", "ended_at")


class Store:
    """A tracking store at ``url``: a SQLAlchemy URL, a SQLite file path, or None for
    ``$KILN_STORE`` or ``./kiln.db``. Opening it migrates the schema to the newest revision.

    ``stale_after``: seconds without a heartbeat after which a 'running' run on another host
    reads as 'killed' (on this host, a run whose process is gone reads as 'killed' at once).
    """

    def __init__(self, url: str | os.PathLike[str] | None = None, *, stale_after: float = 120.0):
        self.url = resolve_url(url)
        self.engine: Engine = make_engine(self.url)
        self.stale_after = stale_after
        self.artifact_root: Path = artifact_root(self.url)
        upgrade(self.engine)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # ---- runs --------------------------------------------------------------------------

    def create_run(
        self, name: str = "run", config: Mapping[str, Any] | None = None, *,
        system: Mapping[str, Any] | None = None, flush_interval: float = 0.5,
    ) -> Run:  # fmt: skip
        """Start a run (status 'running', this process's pid and host) and return its handle."""
        from kiln.track._run import Run

        now = time.time()
        row = {"name": str(name)[:200], "status": "running", "config": _jsonable(config or {}),
               "system": _jsonable(system or {}), "summary": {}, "pid": os.getpid(),
               "host": HOST, "started_at": now, "heartbeat_at": now}  # fmt: skip
        with self.engine.begin() as conn:
            run_id = conn.execute(insert(RunRow).values(**row).returning(RunRow.id)).scalar_one()
        return Run(self, run_id, flush_interval=flush_interval)

    def resume_run(self, run_id: int, *, flush_interval: float = 0.5) -> Run:
        """Mark run ``run_id`` running again in this process (a training resumed from a
        checkpoint) and return its handle."""
        from kiln.track._run import Run

        now = time.time()
        values = {"status": "running", "pid": os.getpid(), "host": HOST, "heartbeat_at": now,
                  "ended_at": None, "error": None}  # fmt: skip
        self._update_run(run_id, values)
        return Run(self, run_id, flush_interval=flush_interval)

    def get_run(self, run_id: int) -> RunInfo:
        with self.engine.connect() as conn:
            row = conn.execute(select(RunRow).where(RunRow.id == run_id)).first()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id} in {self!r}")
        return self._info(row)

    def runs(
        self, *, status: str | None = None, name: str | None = None, sort: str = "-started_at",
        limit: int = 100, offset: int = 0,
    ) -> list[RunInfo]:  # fmt: skip
        """Runs, newest first by default. ``status`` filters on the status as read (so
        'killed' finds dead 'running' runs); ``name`` on a substring; ``sort`` is a column
        (``id``, ``name``, ``status``, ``started_at``, ``ended_at``) or a metric of the
        summary (``loss``), with ``-`` for descending."""
        query = select(RunRow)
        if name:
            query = query.where(RunRow.name.contains(name, autoescape=True))
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, received status={status!r}")
        column = sort.removeprefix("-")
        descending = sort.startswith("-")
        if column in SORTABLE and status is None:
            order = getattr(RunRow, column)
            query = query.order_by(order.desc() if descending else order.asc(), RunRow.id)
            query = query.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            infos = [self._info(row) for row in conn.execute(query)]
        if status is not None:
            infos = [info for info in infos if info.status == status]
        if column not in SORTABLE or status is not None:
            infos = _sort(infos, column, descending)[offset : offset + limit]
        return infos

    def set_status(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, received status={status!r}")
        ended = None if status == "running" else time.time()
        self._update_run(run_id, {"status": status, "ended_at": ended, "error": error})

    def heartbeat(self, run_id: int) -> None:
        self._update_run(run_id, {"heartbeat_at": time.time()})

    def delete_run(self, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(MetricRow).where(MetricRow.run_id == run_id))
            _artifacts.delete_all(conn, self.artifact_root, run_id)
            conn.execute(delete(RunRow).where(RunRow.id == run_id))

    # ---- metrics -----------------------------------------------------------------------

    def write_metrics(self, run_id: int, points: Sequence[MetricPoint]) -> None:
        """Insert ``points`` in one transaction; also the run's heartbeat and summary."""
        if not points:
            self.heartbeat(run_id)
            return
        rows = [{"run_id": run_id, "key": p.key, "step": p.step, "epoch": p.epoch,
                 "value": _finite(p.value), "wall_time": p.wall_time} for p in points]  # fmt: skip
        last = {p.key: _finite(p.value) for p in sorted(points, key=lambda p: p.step)}
        with self.engine.begin() as conn:
            summary = conn.execute(select(RunRow.summary).where(RunRow.id == run_id)).first()
            if summary is None:
                raise RunNotFoundError(f"no run with id {run_id} in {self!r}")
            conn.execute(insert(MetricRow), rows)
            values = {"summary": {**(summary[0] or {}), **last}, "heartbeat_at": time.time()}
            conn.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def metric_keys(self, run_id: int) -> list[str]:
        self.get_run(run_id)
        query = select(MetricRow.key).where(MetricRow.run_id == run_id).distinct()
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def metrics(
        self, run_id: int, keys: Iterable[str] | None = None, *, downsample: int | None = None
    ) -> dict[str, Series]:
        """``{key: Series}`` of run ``run_id`` (all keys by default), ordered by step. With
        ``downsample=N``, at most N points per key, keeping each step bucket's min and max."""
        if downsample is not None and downsample < 2:
            raise ValueError(f"downsample must be at least 2 points, received {downsample}")
        keys = list(keys) if keys is not None else self.metric_keys(run_id)
        self.get_run(run_id)
        with self.engine.connect() as conn:
            return {key: _series(conn, run_id, key, downsample) for key in keys}

    # ---- artifacts and tokens ----------------------------------------------------------

    def add_artifact(
        self, run_id: int, source: str | os.PathLike[str] | bytes, name: str | None = None
    ) -> ArtifactInfo:
        """Copy a file (or store bytes) as artifact ``name`` of run ``run_id``."""
        self.get_run(run_id)
        return _artifacts.add(self.engine, self.artifact_root, run_id, source, name)

    def artifacts(self, run_id: int) -> list[ArtifactInfo]:
        self.get_run(run_id)
        return _artifacts.list_(self.engine, run_id)

    def artifact_path(self, run_id: int, name: str) -> Path:
        """The file of artifact ``name``; ``FileNotFoundError`` if the run has no such one."""
        return _artifacts.path(self.engine, self.artifact_root, run_id, name)

    def create_token(self, name: str = "token") -> str:
        """A new API token; only its SHA-256 is stored, so print it now or lose it."""
        return _tokens.create(self.engine, name)

    def verify_token(self, token: str) -> bool:
        return _tokens.verify(self.engine, token)

    def has_tokens(self) -> bool:
        return _tokens.count(self.engine) > 0

    # ---- helpers -----------------------------------------------------------------------

    def _update_run(self, run_id: int, values: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(RunRow).where(RunRow.id == run_id).values(**values))
        if done.rowcount == 0:
            raise RunNotFoundError(f"no run with id {run_id} in {self!r}")

    def _info(self, row: Any) -> RunInfo:
        r = row  # a Row of the runs table's columns
        status = effective_status(r.status, r.pid, r.host, r.heartbeat_at, time.time(),
                                  self.stale_after)  # fmt: skip
        return RunInfo(id=r.id, name=r.name, status=status, config=r.config or {},
                       system=r.system or {}, summary=r.summary or {}, pid=r.pid, host=r.host,
                       started_at=r.started_at, heartbeat_at=r.heartbeat_at,
                       ended_at=r.ended_at, error=r.error)  # fmt: skip


def _series(conn: Connection, run_id: int, key: str, downsample: int | None) -> Series:
    total = conn.execute(select(func.count()).where(MetricRow.run_id == run_id,
                                                    MetricRow.key == key)).scalar_one()  # fmt: skip
    series = Series(total=total)
    for step, epoch, value, wall_time in series_rows(conn, run_id, key, downsample):
        series.step.append(step)
        series.epoch.append(epoch)
        series.value.append(value)
        series.wall_time.append(wall_time)
    return series


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _sort(infos: list[RunInfo], column: str, descending: bool) -> list[RunInfo]:
    def key(info: RunInfo) -> tuple[int, Any]:
        value = getattr(info, column) if column in SORTABLE else info.summary.get(column)
        return (0, value) if value is not None else (1, 0)

    present = sorted((i for i in infos if key(i)[0] == 0), key=key, reverse=descending)
    return present + [i for i in infos if key(i)[0] == 1]


def _jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold turned into its ``str`` (and NaN into None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
