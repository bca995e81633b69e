"""``/v1/runs``: list, read, metrics (downsampled), artifacts (download, upload)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from kiln.server._schemas import ArtifactOut, ErrorOut, MetricsOut, RunDetailOut, RunsOut
from kiln.track import Store
from kiln.track._artifacts import check_name

ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut},
          422: {"model": ErrorOut}}  # fmt: skip
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERRORS)  # type: ignore[arg-type]


def _store(request: Request) -> Store:
    return request.app.state.store


@router.get("", response_model=RunsOut)
def list_runs(
    request: Request,
    status: Annotated[str | None, Query(pattern="^(running|finished|failed|killed)$")] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    sort: Annotated[str, Query(pattern=r"^-?[A-Za-z0-9_./-]+$", max_length=250)] = "-started_at",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    """Runs, newest first; filter by ``status`` and ``name`` (substring), ``sort`` by a column
    (id, name, status, started_at, ended_at) or a metric's last value, ``-`` for descending."""
    runs = _store(request).runs(status=status, name=name, sort=sort, limit=limit, offset=offset)
    return {"runs": [r.to_dict() for r in runs]}


@router.get("/{run_id}", response_model=RunDetailOut)
def get_run(request: Request, run_id: int) -> dict:
    store = _store(request)
    info = store.get_run(run_id).to_dict()
    info["metric_keys"] = store.metric_keys(run_id)
    info["artifacts"] = [a.to_dict() for a in store.artifacts(run_id)]
    return info


@router.get("/{run_id}/metrics", response_model=MetricsOut)
def get_metrics(
    request: Request,
    run_id: int,
    keys: Annotated[
        str | None, Query(max_length=10_000, description="comma-separated; all if absent")
    ] = None,
    downsample: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> dict:
    """Points of a run's metrics; ``downsample=N`` keeps at most N per key (each step
    bucket's min and max, so spikes survive)."""
    wanted = [k for k in keys.split(",") if k] if keys else None
    series = _store(request).metrics(run_id, wanted, downsample=downsample)
    return {"run_id": run_id, "metrics": {k: s.to_dict() for k, s in series.items()}}


@router.get("/{run_id}/artifacts", response_model=list[ArtifactOut])
def list_artifacts(request: Request, run_id: int) -> list[dict]:
    return [a.to_dict() for a in _store(request).artifacts(run_id)]


@router.get("/{run_id}/artifacts/{name:path}", response_class=FileResponse)
def download_artifact(request: Request, run_id: int, name: str) -> FileResponse:
    store = _store(request)
    found = {a.name: a for a in store.artifacts(run_id)}.get(check_name(name))
    if found is None:
        raise HTTPException(404, f"run {run_id} has no artifact named {name!r}")
    path = store.artifact_path(run_id, found.name)
    return FileResponse(path, media_type=found.media_type, filename=path.name)


@router.put("/{run_id}/artifacts/{name:path}", response_model=ArtifactOut, status_code=201)
async def upload_artifact(request: Request, run_id: int, name: str) -> dict:
    """Store the request body as artifact ``name`` (at most the server's upload limit)."""
    limit: int = request.app.state.max_upload_bytes
    store = _store(request)
    store.get_run(run_id)
    check_name(name)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _too_large(len(body), limit)
    return store.add_artifact(run_id, bytes(body), name).to_dict()


def _too_large(size: int, limit: int) -> HTTPException:
    return HTTPException(413, f"upload too large: {size} bytes, the limit is {limit} bytes "
                         "(start the server with a larger --max-upload-mb)")  # fmt: skip
