"""Request-body size limit: a pure ASGI middleware (it sits on every request's path).

A body whose ``Content-Length`` is over the limit is answered 413 before a byte of it
is read; otherwise the bytes are counted as the app reads them (chunked bodies, or a
length that lies), and the read that passes the limit ends the request with 413. So a
300 MB body never sits in memory. Batch writes (``POST /v1/events:batch``, ``PUT
/v1/catalog/items``) have their own, larger limit.

Why not Starlette's ``RequestBodyLimitMiddleware`` (FastAPI's ``max_body_size``): it
answers a too-long ``Content-Length`` with plain text ``Content Too Large``, replacing
whatever the app answers, where this API answers JSON that names the limit and the
setting that raises it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: paths (ends of) that take ``batch_limit``
BATCH_PATHS = ("/v1/events:batch", "/v1/catalog/items")


class BodyTooLarge(HTTPException):
    """Raised by the counting ``receive``: FastAPI lets an HTTPException raised while it
    reads the body through, so the app's 413 handler answers it."""

    def __init__(self, limit: int, setting: str) -> None:
        # Connection: close, or the server reads the rest of a refused (chunked) body to
        # keep the connection alive: 300 MB read and thrown away, forever for an endless one
        super().__init__(413, f"request body too large: this route accepts at most {limit:,} bytes ({setting})",
                         headers={"Connection": "close"})


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, batch_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.batch_limit = batch_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].endswith(BATCH_PATHS):
            limit, setting = self.batch_limit, "SHOPFORMER_MAX_BATCH_BODY_BYTES"
        else:
            limit, setting = self.limit, "SHOPFORMER_MAX_BODY_BYTES"
        length = _content_length(scope)
        if length is not None and length > limit:
            await _answer(BodyTooLarge(limit, setting), scope, send)
            return
        read = 0
        started = False

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:  # not answered inside the app (a read outside a route)
            if started:
                raise
            await _answer(exc, scope, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length; count the bytes anyway
    return None


async def _answer(exc: BodyTooLarge, scope: Scope, send: Send) -> None:
    """413 without reading the body (the server closes the connection after it)."""
    response = JSONResponse({"detail": exc.detail}, status_code=413, headers={"Connection": "close"})

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)
