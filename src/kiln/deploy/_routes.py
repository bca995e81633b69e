"""The inference server's routes: health, metrics, models and infer (see ``_inference_app``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import torch
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from kiln.deploy import _codecs, _images
from kiln.deploy._batcher import (
    Batcher,
    EngineError,
    QueueFullError,
    TooLargeError,
    UnavailableError,
)
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


@models.post("/models/{name}/infer")
async def infer(name: str, request: Request) -> Response:
    start = time.perf_counter()
    batcher = _batcher(request, name)
    counter = request.app.state.metrics.requests
    try:
        outputs = await _infer(request, batcher)
        body, media_type, headers = _codecs.encode(outputs, request.headers.get("accept", ""), name)
    except HTTPException as error:
        counter.inc((*batcher.labels, ("status", str(error.status_code))))
        raise
    counter.inc((*batcher.labels, ("status", "200")))
    request.app.state.metrics.latency.observe(batcher.labels, time.perf_counter() - start)
    return Response(body, media_type=media_type, headers=headers)


async def _infer(request: Request, batcher: Batcher) -> torch.Tensor:
    try:
        batcher.check_room(1)  # full already: answer before reading the body
        batch = await _inputs(request, batcher)
        return await batcher.submit(batch)
    except (ValueError, UnavailableError, EngineError, ImportError) as error:
        raise _http(error) from None


async def _inputs(request: Request, batcher: Batcher) -> torch.Tensor:
    engine = batcher.engine
    media_type = request.headers.get("content-type", "application/json")
    media_type = media_type.split(";")[0].strip().lower()
    if media_type == _codecs.BINARY:
        length = request.headers.get("content-length")
        shape = request.headers.get("x-shape") or request.query_params.get("shape")
        if length is not None and length.isdigit() and int(length) > 0:
            batcher.check_room(_codecs.binary_count(engine, int(length), shape))
        body = await _body(request)
        return _codecs.decode_binary(engine, body, shape, request.headers.get("x-dtype"))
    if media_type == "application/json":
        return _codecs.decode_json(engine, await _body(request))
    if media_type.startswith("image/"):
        blobs = [bytes(await _body(request))]
    elif media_type == "multipart/form-data":
        blobs = await _files(request, await _body(request))
    else:
        raise HTTPException(
            415,
            f"infer takes {_codecs.BINARY}, application/json, image/* or "
            f"multipart/form-data bodies. Received: {media_type!r}.",
        )
    batcher.check_room(len(blobs))
    return await asyncio.to_thread(_images.decode_images, engine, blobs)


async def _body(request: Request) -> bytearray:
    """The whole body, refused past ``max_body_bytes`` (by its header or as it streams)."""
    limit = request.app.state.max_body
    too_large = HTTPException(
        413,
        f"the request body exceeds the server's limit of {limit} "
        "bytes: split the batch, or raise --max-body-mb.",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return body


async def _files(request: Request, body: bytearray) -> list[bytes]:
    """The file parts of a multipart body, in order."""
    from starlette.formparsers import MultiPartParser

    async def stream() -> Any:
        yield bytes(body)

    parser = MultiPartParser(request.headers, stream(), max_part_size=len(body) + 1)
    try:
        form = await parser.parse()
    except Exception as error:  # python-multipart's errors are of several kinds
        raise ValueError(f"the multipart body could not be parsed: {error}") from None
    blobs = [await item.read() for _, item in form.multi_items() if not isinstance(item, str)]
    await form.close()
    return blobs


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


def _http(error: BaseException) -> HTTPException:
    if isinstance(error, QueueFullError):
        return HTTPException(429, str(error), headers={"Retry-After": "1"})
    if isinstance(error, TooLargeError):
        return HTTPException(413, str(error))
    if isinstance(error, UnavailableError):
        return HTTPException(503, str(error))
    if isinstance(error, EngineError | ImportError):
        return HTTPException(500, str(error))
    return HTTPException(400, str(error))
