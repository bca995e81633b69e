"""Errors as JSON ``{"error": message, "detail": ...}`` with a 4xx status, never a bare 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from kiln.track import RunNotFoundError


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(RunNotFoundError, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(FileNotFoundError, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(ValueError, _bad_value)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _unavailable)  # type: ignore[arg-type]


def _http(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)


def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (received {e.get('input')!r})"
        for e in error.errors()
    ]
    return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, 422)


def _not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, 404)


def _bad_value(request: Request, error: ValueError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, 400)


def _unavailable(request: Request, error: OperationalError) -> JSONResponse:
    message = f"the store is unavailable: {error.orig or error}"
    return JSONResponse({"error": message}, 503)
