"""The inference server's FastAPI routes: health, metrics and models (infer is ``_infer``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from kiln.deploy._batcher import Batcher
from kiln.deploy._inference_app import describe

health = APIRouter()
models = APIRouter(prefix="/v1")
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@health.get("/health")
async def live() -> dict[str, str]:
    return {"status": "live"}


@health.get("/health/ready", response_model=None)
async def ready(request: Request) -> dict[str, Any] | JSONResponse:
    state = request.app.state
    if state.ready:
        return {"status": "ready", "models": list(state.batchers)}
    return JSONResponse({"error": state.load_error or "the models are loading"}, 503)


@health.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.text(), media_type=PROMETHEUS)


async def check_token(request: Request) -> None:
    """``kiln.server``'s bearer-token check, with each verified header remembered."""
    state = request.app.state
    if not state.token_required:
        return
    header = request.headers.get("authorization", "")
    if header in state.verified:
        return
    from kiln.server._auth import check_token as verify  # a store query: off the event loop

    await asyncio.to_thread(verify, request)
    state.verified.add(header)


@models.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    batchers = _ready(request).batchers
    return {"models": [describe(name, batcher) for name, batcher in batchers.items()]}


@models.get("/models/{name}")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    return describe(name, _batcher(request, name))


def _ready(request: Request) -> Any:
    state = request.app.state
    if not state.ready:
        raise HTTPException(503, state.load_error or "the models are loading: retry shortly")
    return state


def _batcher(request: Request, name: str) -> Batcher:
    batchers: dict[str, Batcher] = _ready(request).batchers
    if name not in batchers:
        raise HTTPException(404, f"no model named {name!r}; this server has {sorted(batchers)}.")
    return batchers[name]
