"""Pseudonymous customer ids at the API's edge (``SHOPFORMER_PSEUDONYM_KEY``).

Callers keep using the shop's raw customer ids; the raw id stops at the edge:

``UserIdPseudonyms``
    A pure ASGI middleware, outermost, that rewrites the request before anything else
    sees it: the customer id in ``/v1/users/{user_id}[/...]`` and every ``user_id``
    query parameter (``/v1/search?user_id=``) become pseudonyms in ``scope["path"]``,
    ``scope["raw_path"]`` and ``scope["query_string"]``. Routes, caches, search
    personalization, metrics, the audit log and error messages only ever see the
    pseudonym, so the answers that echo a user id echo the pseudonym (the id the store
    knows; the caller can use either). The scope is changed in place on purpose:
    uvicorn's access log reads that same dict when the answer starts.
    Event bodies (``user_id``, ``session_id``) are mapped where rows are written
    (:func:`shopformer.serve.writes.write_events`).
``AccessLogPseudonyms``
    A filter on the ``uvicorn.access`` logger that applies the same rewriting to each
    logged request line: the safety net for requests answered before the middleware
    ran (a server that copies the scope, a rejection by an outer layer). Mapping is
    idempotent, so a path already rewritten is left as it is.

An id shaped like a pseudonym of another key is refused with 422 (mapping it again
would split that customer; see :mod:`shopformer.privacy.pseudonym`).
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from shopformer.privacy.pseudonym import ForeignPseudonym, Pseudonymizer

#: path segments after which one segment is a customer id: ``/v1/users/{user_id}...``
USER_PATH = ("", "v1", "users")
#: query parameters that are customer ids
USER_PARAMS = frozenset({"user_id"})
ACCESS_LOGGER = "uvicorn.access"


def map_path(pseudonyms: Pseudonymizer, raw_path: str) -> str:
    """``raw_path`` (percent-encoded, without the root path) with its customer id
    segment replaced by the pseudonym. Segments are split on literal ``/`` only, so an
    id holding an encoded ``%2F`` is mapped whole. Raises :class:`ForeignPseudonym`."""
    parts = raw_path.split("/")
    n = len(USER_PATH)
    if len(parts) > n and tuple(parts[:n]) == USER_PATH and parts[n]:
        parts[n] = pseudonyms.user(unquote(parts[n]))
        return "/".join(parts)
    return raw_path


def map_query(pseudonyms: Pseudonymizer, query: str) -> str:
    """``query`` (``a=1&user_id=x``) with every customer id parameter mapped; the same
    text when it has none. Raises :class:`ForeignPseudonym`."""
    if not any(p in query for p in USER_PARAMS):
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k in USER_PARAMS and v for k, v in pairs):
        return query
    return urlencode([(k, pseudonyms.user(v) if k in USER_PARAMS and v else v) for k, v in pairs])


def map_target(pseudonyms: Pseudonymizer, target: str) -> str:
    """A request target as logged (``/v1/users/x/recommendations?k=3``), mapped."""
    path, sep, query = target.partition("?")
    return map_path(pseudonyms, path) + sep + (map_query(pseudonyms, query) if sep else "")


class UserIdPseudonyms:
    """Rewrite customer ids in the path and query to pseudonyms (see the module docstring)."""

    def __init__(self, app: ASGIApp, pseudonyms: Pseudonymizer) -> None:
        self.app = app
        self.pseudonyms = pseudonyms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for where, rewrite in (("path", self._path), ("query", self._query)):
                try:
                    rewrite(scope)
                except ForeignPseudonym as exc:
                    await _refuse(send, where, exc)
                    return
        await self.app(scope, receive, send)

    def _path(self, scope: Scope) -> None:
        root = scope.get("root_path", "")
        raw = scope.get("raw_path")
        text = raw.decode("latin-1") if raw is not None else scope["path"]
        rest = text[len(root):] if root and text.startswith(root) else text
        mapped = map_path(self.pseudonyms, rest)
        if mapped != rest:
            scope["path"] = root + unquote(mapped)
            if raw is not None:
                scope["raw_path"] = (text[: len(text) - len(rest)] + mapped).encode("latin-1")

    def _query(self, scope: Scope) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        new = map_query(self.pseudonyms, query) if query else query
        if new != query:
            scope["query_string"] = new.encode("latin-1")


async def _refuse(send: Send, where: str, exc: ForeignPseudonym) -> None:
    body = json.dumps({"detail": [{"type": "foreign_pseudonym", "loc": [where, "user_id"], "msg": str(exc),
                                   "input": exc.value}]}).encode()
    await send({"type": "http.response.start", "status": 422, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class AccessLogPseudonyms(logging.Filter):
    """Map customer ids in uvicorn's access log lines (``'%s - "%s %s HTTP/%s" %d'``, the
    target third)."""

    def __init__(self, pseudonyms: Pseudonymizer) -> None:
        super().__init__()
        self.pseudonyms = pseudonyms

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            try:
                target = map_target(self.pseudonyms, args[2])
            except ForeignPseudonym:  # answered 422; that id is not one of ours
                target = args[2]
            if target != args[2]:
                record.args = (*args[:2], target, *args[3:])
        return True


def install_access_log_filter(pseudonyms: Pseudonymizer) -> AccessLogPseudonyms:
    """Add the filter to uvicorn's access logger (remove it with
    :func:`remove_access_log_filter` when the app stops)."""
    found = AccessLogPseudonyms(pseudonyms)
    logging.getLogger(ACCESS_LOGGER).addFilter(found)
    return found


def remove_access_log_filter(found: AccessLogPseudonyms) -> None:
    logging.getLogger(ACCESS_LOGGER).removeFilter(found)


__all__ = ["AccessLogPseudonyms", "UserIdPseudonyms", "install_access_log_filter", "map_path", "map_query",
           "map_target", "remove_access_log_filter"]
