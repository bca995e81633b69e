"""``inference_app``: the HTTP inference server over named engines, with dynamic batching.

Routes (``/v1`` as in kiln's REST API; errors are ``{"error": message}``):

- ``GET /v1/models``, ``GET /v1/models/{name}``: input shape and dtype, batch sizes, device.
- ``POST /v1/models/{name}/infer``: a batch as raw bytes (``application/octet-stream``), JSON,
  one image (``image/jpeg``, ``image/png``) or several (``multipart/form-data``). The answer is
  JSON, or raw bytes with ``X-Shape``/``X-Dtype`` headers for ``Accept:
  application/octet-stream``. 400 malformed input, 413 too large, 429 queue full (with
  ``Retry-After``), 500 the engine failed on the batch, 503 not loaded yet.
- ``GET /health`` (live), ``GET /health/ready`` (every engine loaded), ``GET /metrics``
  (Prometheus text). These three never need a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from kiln._extras import require
from kiln.deploy import _codecs, _images
from kiln.deploy._batcher import Batcher
from kiln.deploy._engine import Engine
from kiln.deploy._infer import InferenceApp
from kiln.deploy._metrics import ServeMetrics

log = logging.getLogger("kiln.serve")
Engines = Mapping[str, Engine] | Callable[[], Mapping[str, Engine]]
SWITCH_INTERVAL_MS = "0.1"  # default of $KILN_SERVE_SWITCH_INTERVAL_MS


def inference_app(
    engines: Engines,
    *,
    max_delay_ms: float = 1.0,
    max_queue: int = 1024,
    max_body_bytes: int = 64 << 20,
    preferred_sizes: bool = True,
    token_required: bool = False,
    store: Any = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """An ASGI app serving ``engines`` (name -> Engine, or a function that loads them).

    ``max_delay_ms``: how long a batch waits for more requests after its first; not at all
    when the queue holds one of the engine's batch sizes exactly; a batch then takes the queued
    requests the engine serves at the least time per sample. ``preferred_sizes=False`` waits out
    the delay and takes every request (see ``Batcher``).
    ``max_queue``: samples that may wait; more get 429. ``token_required``: ``/v1`` needs
    ``Authorization: Bearer <token>`` with a token of ``store`` (``kiln token create``).

    A loader runs in the background once the server starts; ``/health/ready`` answers 503
    until it returns and each model's batcher has timed its engine's batch sizes. While
    serving, the interpreter's GIL switch interval drops to 0.1 ms
    (``$KILN_SERVE_SWITCH_INTERVAL_MS``): the engine's thread, waiting for the GIL between
    torch calls, gets it back that soon even while the event loop is busy (with Python's
    default, 5 ms, a dozen such waits per batch would add up in the latency).
    The app's ``state`` is the FastAPI app's (``.fastapi``), which serves all but infer.
    """
    require("fastapi", "serve")
    from fastapi import Depends, FastAPI

    from kiln import __version__
    from kiln.server import _errors

    if max_delay_ms < 0 or max_queue < 1 or max_body_bytes < 1:
        raise ValueError(
            f"inference_app needs max_delay_ms >= 0, max_queue >= 1 and "
            f"max_body_bytes >= 1. Received: max_delay_ms={max_delay_ms}, "
            f"max_queue={max_queue}, max_body_bytes={max_body_bytes}."
        )
    if token_required and store is None:
        raise ValueError("inference_app(token_required=True) needs the store holding the tokens.")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interval = sys.getswitchinterval()
        ms = float(os.environ.get("KILN_SERVE_SWITCH_INTERVAL_MS", SWITCH_INTERVAL_MS))
        sys.setswitchinterval(min(interval, ms / 1000))
        app.state.batchers, app.state.load_error, app.state.ready = {}, None, False
        loading = asyncio.create_task(_load(app, engines, on_load_error))
        if isinstance(engines, Mapping):  # loaded already: ready before the first request
            await loading
        try:
            yield
        finally:
            loading.cancel()
            for batcher in app.state.batchers.values():
                batcher.stop()
            sys.setswitchinterval(interval)

    app = FastAPI(
        title="kiln serve",
        version=__version__,
        lifespan=lifespan,
        description="Inference with dynamic batching over kiln engines.",
    )
    state = app.state
    state.batchers, state.load_error, state.ready = {}, None, False
    state.max_delay, state.max_queue, state.max_body = (
        max_delay_ms / 1000,
        max_queue,
        max_body_bytes,
    )
    state.preferred_sizes = preferred_sizes
    state.metrics = ServeMetrics(lambda: {n: b.depth for n, b in state.batchers.items()})
    state.store, state.token_required, state.verified = store, token_required, set()
    _errors.install(app)
    from kiln.deploy import _routes

    app.include_router(_routes.health)
    app.include_router(_routes.models, dependencies=[Depends(_routes.check_token)])
    return InferenceApp(app)


async def _load(
    app: Any, engines: Engines, on_error: Callable[[BaseException], None] | None
) -> None:
    state = app.state
    try:
        loaded = engines if isinstance(engines, Mapping) else await asyncio.to_thread(engines)
        for name, engine in loaded.items():
            if not isinstance(engine, Engine):
                raise TypeError(
                    f"inference_app serves kiln.deploy.Engine objects. Received: "
                    f"{name!r} -> {type(engine).__name__}."
                )
        loop = asyncio.get_running_loop()
        for name, engine in loaded.items():
            batcher = Batcher(
                engine,
                state.metrics,
                name=name,
                max_delay=state.max_delay,
                max_queue=state.max_queue,
                preferred_sizes=state.preferred_sizes,
            )
            batcher.start(loop)
            state.batchers[name] = batcher
        for batcher in state.batchers.values():  # each times its engine's sizes first
            await asyncio.to_thread(batcher.wait_ready)
        state.ready = True
        log.info("kiln serve: ready with %s", ", ".join(loaded) or "no models")
    except Exception as error:  # reported by /health/ready and on_error
        log.exception("kiln serve: loading the models failed")
        state.load_error = f"loading the models failed: {type(error).__name__}: {error}"
        if on_error is not None:
            on_error(error)


def describe(name: str, batcher: Batcher) -> dict[str, Any]:
    """What a client needs to call model ``name``."""
    engine = batcher.engine
    images = _images.takes_images(engine)
    return {
        "name": name,
        "input": {
            "shape": list(engine.input_shape),
            "dtype": _codecs.dtype_name(engine.input_dtype),
            "layout": "NHWC" if images else None,
        },
        "batch_sizes": list(engine.batch_sizes),
        "max_batch_size": engine.max_batch_size,
        "device": str(engine.device),
        "content_types": [_codecs.BINARY, "application/json"]
        + (["image/jpeg", "image/png", "multipart/form-data"] if images else []),
        "queue": {
            "max_samples": batcher.max_queue,
            "max_delay_ms": batcher.max_delay * 1000,
            "preferred_sizes": batcher.preferred_sizes,
        },
        "info": json.loads(json.dumps(engine.info, default=str)),
    }
