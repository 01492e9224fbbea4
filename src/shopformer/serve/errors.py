"""How errors are answered: JSON that always renders, and never the whole input echoed back.

A 422 names every refused field; what it echoes of the input is a short preview (text
cut to :data:`PREVIEW_CHARS` characters, objects and arrays to that much of their JSON,
NaN and infinity as text), and at most :data:`MAX_ERRORS` errors are listed, so a 1 MB
body of bad rows never comes back as a 1 MB answer."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from shopformer.store import StoreError

from .recommender import NoModelError, UnknownItemError
from .search import SearchNotReady
from .writes import RowErrors

log = logging.getLogger("shopformer.serve")

#: characters of an input (or of its JSON) that an error shows
PREVIEW_CHARS = 100
#: errors listed in one answer
MAX_ERRORS = 50
_LOC_CHARS = 100
_CONTAINER_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=True, default=str)
#: FastAPI's 400 for a body it could not decode, and what to say instead
_UNPARSED = "There was an error parsing the body"
_UNPARSED_WHY = {UnicodeDecodeError: "the body is not UTF-8", RecursionError: "the JSON is nested too deeply"}


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error that shows a bad input (even a lone
    surrogate) always renders."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _clip(text: str, n: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"


def preview(value: object) -> object:
    """A bounded, JSON-safe stand-in for an input: scalars as they are (NaN and infinity
    as text), text cut, containers as the start of their JSON (encoded lazily: the work
    is bounded too)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) < 10**15:
            return value
        try:
            return _clip(str(value), 20)
        except ValueError:  # past Python's limit of 4,300 digits for text
            return f"(an integer of {value.bit_length():,} bits)"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, bytes):
        return _clip(value.decode("utf-8", "replace"))
    parts, n = [], 0
    try:
        for chunk in _CONTAINER_ENCODER.iterencode(value):
            parts.append(chunk)
            n += len(chunk)
            if n > PREVIEW_CHARS:
                return "".join(parts)[:PREVIEW_CHARS] + "..."
    except ValueError:  # an integer past Python's 4,300 digits for text
        parts.append("...")
    return "".join(parts)


def _loc(part: object) -> object:
    return _clip(part, _LOC_CHARS) if isinstance(part, str) else part


def _ctx(value: object) -> object:
    """A validator's context (limits, expected values, the error): bounded like inputs,
    with room for the message."""
    if value is None or isinstance(value, bool | int | float):
        return preview(value)
    return _clip(str(value), 300)


def bounded(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_ERRORS errors, each with a preview for its input and bounded loc."""
    out = []
    for e in errors[:MAX_ERRORS]:
        e = dict(e)
        if "input" in e:
            e["input"] = preview(e["input"])
        if "loc" in e:
            e["loc"] = [_loc(p) for p in e["loc"]]
        if "ctx" in e:
            e["ctx"] = {k: _ctx(v) for k, v in e["ctx"].items()}
        out.append(e)
    return out


def _body(errors: list[dict[str, Any]], message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": jsonable_encoder(bounded(errors))}
    if len(errors) > MAX_ERRORS:
        message = (message + "; " if message else "") + f"{len(errors):,} errors, the first {MAX_ERRORS} shown"
    if message:
        body["message"] = message
    return body


def install(app: FastAPI) -> None:
    """The app's exception handlers."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return AsciiJSONResponse(_body(list(exc.errors())), status_code=422)

    @app.exception_handler(RowErrors)
    async def _rows(request: Request, exc: RowErrors) -> JSONResponse:
        if exc.status == 409:
            what = "event_id already stored with a different payload, nothing was written"
        else:
            what = "batch refused, nothing was written" if exc.batch else "event refused"
        return AsciiJSONResponse(_body(exc.errors, what), status_code=exc.status)

    @app.exception_handler(400)
    async def _unreadable(request: Request, exc: HTTPException) -> JSONResponse:
        # FastAPI answers 422 for a JSON syntax error but 400 for a body that is not
        # UTF-8, nested past Python's limit or holding a 5,000-digit number: the same
        # mistake, so the same answer (a 422 naming the body).
        if exc.detail == _UNPARSED and exc.__cause__ is not None:
            why = _UNPARSED_WHY.get(type(exc.__cause__)) or _clip(str(exc.__cause__))
            return AsciiJSONResponse(_body([{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {why}",
                                             "input": {}}]), status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=400, headers=getattr(exc, "headers", None))

    @app.exception_handler(NoModelError)
    async def _no_model(request: Request, exc: NoModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(SearchNotReady)
    async def _search_not_ready(request: Request, exc: SearchNotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(UnknownItemError)
    async def _unknown(request: Request, exc: UnknownItemError) -> JSONResponse:
        return AsciiJSONResponse({"detail": f"unknown item {preview(exc.args[0])!r}"}, status_code=404)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        return AsciiJSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The transaction was rolled back: nothing was written. Log the cause, tell the
        # client to retry (the database may be locked, restarting or unreachable).
        log.exception("store error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"store unavailable ({type(exc).__name__}); nothing was written, retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
