"""Event ingestion (single and batch) and user lookup.

``POST /v1/events`` is ``async``: one event is a sub-millisecond commit on the local
SQLite store (durable before the answer), cheaper on the event loop than a hand-off to
the thread pool, which under load waits for the GIL (measured with benchmarks/serve_latency.py:
p50 18 -> 1.6 ms at 500 events/s). Batches (up to ``max_batch`` rows) and lookups stay
in the pool so that they never stall the loop. On PostgreSQL a commit is a round trip:
scale with ``serve --workers``."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response, status

from shopformer.store import fingerprint

from ..feedback import attribute_events
from ..deps import get_metrics, get_service, get_settings, get_write_limits, require_read, require_write
from ..metrics import Metrics
from ..recommender import RecommendationService
from ..schemas import BatchAck, ConflictResponse, ErrorResponse, EventAck, EventIn, StoredEvent, UserResponse
from ..settings import ServeSettings
from ..writes import WriteLimits, write_events

router = APIRouter(prefix="/v1", tags=["events"])

WRITE_ERRORS = {
    401: {"model": ErrorResponse, "description": "missing API key"},
    403: {"model": ErrorResponse, "description": "wrong API key, or one without the route's scope"},
    429: {"model": ErrorResponse, "description": "rate limit exceeded (see Retry-After)"},
    413: {"model": ErrorResponse, "description": "body or batch too large"},
    503: {"model": ErrorResponse, "description": "writes disabled / store unavailable"},
}
#: routes that return a customer's data: a read key once any key exists
READ_ERRORS = {k: v for k, v in WRITE_ERRORS.items() if k in (401, 403, 429)}
CONFLICT = {409: {"model": ConflictResponse,
                  "description": "an event_id is already stored with a different payload; nothing was written"}}


@router.post(
    "/events",
    response_model=EventAck,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_write)],
    responses={200: {"model": EventAck, "description": "duplicate event_id: nothing changed"}, **CONFLICT,
               **WRITE_ERRORS},
)
async def post_event(
    request: Request,
    event: EventIn,
    response: Response,
    service: Annotated[RecommendationService, Depends(get_service)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    limits: Annotated[WriteLimits, Depends(get_write_limits)],
) -> EventAck:
    """Store one event (durable before this answers). 201 when stored, 200 when its
    ``event_id`` was already stored with the same payload, 409 (with the stored
    version's fingerprint) when with another. The user's next recommendation sees it.
    With ``request_id`` (from a recommendation or search answer) it is attributed to
    that answer."""
    written = write_events(service.store, [event], batch=False, limits=limits, pseudonyms=request.app.state.pseudonyms)
    service.invalidate_users(written.user_ids)
    if written.inserted:
        _searched(request, [event])
        attribute_events(request, [event])
        _watched(request, [event])
    metrics.events.labels("inserted").inc(written.inserted)
    metrics.events.labels("duplicate").inc(written.duplicates)
    if not written.inserted:
        response.status_code = status.HTTP_200_OK
    return EventAck(status="created" if written.inserted else "duplicate", event_id=written.event_ids[0])


@router.post(
    "/events:batch",
    response_model=BatchAck,
    dependencies=[Depends(require_write)],
    responses={**CONFLICT, **WRITE_ERRORS},
)
def post_events(
    request: Request,
    events: Annotated[list[EventIn], Body(min_length=1)],
    service: Annotated[RecommendationService, Depends(get_service)],
    settings: Annotated[ServeSettings, Depends(get_settings)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    limits: Annotated[WriteLimits, Depends(get_write_limits)],
) -> BatchAck:
    """Store a list of events in one transaction. One invalid row refuses the whole
    batch (422 naming the row index and field), as does an event_id stored with
    another payload (409); nothing is written then."""
    if len(events) > settings.max_batch:
        raise HTTPException(413, f"batch of {len(events)} events exceeds the limit of {settings.max_batch}")
    written = write_events(service.store, events, batch=True, limits=limits, pseudonyms=request.app.state.pseudonyms)
    service.invalidate_users(written.user_ids)
    if written.inserted:
        _searched(request, events)
    if written.inserted and not written.duplicates:  # a batch re-posted in part: not counted twice
        attribute_events(request, events)
        _watched(request, events)
    metrics.events.labels("inserted").inc(written.inserted)
    metrics.events.labels("duplicate").inc(written.duplicates)
    return BatchAck(inserted=written.inserted, duplicates=written.duplicates)


@router.get(
    "/users/{user_id}",
    response_model=UserResponse,
    tags=["lookup"],
    dependencies=[Depends(require_read)],
    responses={404: {"model": ErrorResponse, "description": "unknown user"}, **READ_ERRORS},
)
def get_user(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    service: Annotated[RecommendationService, Depends(get_service)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> UserResponse:
    """A user's most recent events (newest first) and whether the model knows them.
    Needs a key with the ``read`` scope once the server has any key."""
    served = service.served
    known = served is not None and user_id in served.run.users
    df = service.store.user_events(user_id, limit=limit).reverse()
    if df.height == 0 and not known:
        raise HTTPException(404, f"user {user_id!r} has no events and is unknown to the model")
    events = [
        StoredEvent(
            event_id=r["event_id"], item_id=r["item_id"], type=r["event_type"], timestamp=r["timestamp"],
            session_id=r["session_id"], query=r["query"], value=r["value"],
            context=_json_object(r["context"]), fingerprint=fingerprint(r),
        )
        for r in df.iter_rows(named=True)
    ]
    return UserResponse(user_id=user_id, known_to_model=known, events=events)


def _json_object(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


def _searched(request: Request, events: list[EventIn]) -> None:
    """Search events' queries count for autocomplete."""
    search = request.app.state.search
    if search is not None:
        search.record_queries([e.query for e in events if e.type == "search" and e.query])


def _watched(request: Request, events: list[EventIn]) -> None:
    """Score stored events for unusual behaviour (serve/stream_watch.py), when on."""
    watch = request.app.state.stream_watch
    if watch is not None:
        watch.observe(events)
