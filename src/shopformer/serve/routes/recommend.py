"""Recommendations: for a user, for an anonymous session, similar items.

These routes are ``async``: their work is a millisecond or two of CPU (one model pass, one
index search, a local history read) that holds the GIL anyway, so running it on the
event loop is faster than handing each request to FastAPI's thread pool (measured with
benchmarks/serve_latency.py: recommend p50 26 -> 2 ms at 500 req/s on two CPUs). Routes
that wait on disk writes (events, catalog) stay plain functions in the pool."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from shopformer.features.sequences import Sequences

from ..deps import get_service, require_read
from ..explanations import ExplainerCache, explain_ranked
from ..feedback import answered
from ..recommender import RecommendationService, Ranked, Served, UnknownItemError
from ..rerank_schemas import RerankOptions, RerankShiftOut
from ..reranking import RerankUnavailable
from .events import READ_ERRORS
from ..schemas import (
    MAX_K,
    PLACEMENT_PATTERN,
    ErrorResponse,
    Filters,
    ModelInfo,
    RecommendationResponse,
    RuleMoveOut,
    ScoredItem,
    SessionRequest,
    SimilarResponse,
)

router = APIRouter(prefix="/v1", tags=["recommendations"])

K = Annotated[int, Query(ge=1, le=MAX_K, description=f"number of items, 1..{MAX_K}")]
#: where the answer is shown (logged with its impression; default: the route's name)
PlacementQ = Annotated[str | None, Query(pattern=PLACEMENT_PATTERN, description="where the answer is shown, e.g. "
                                         "home, pdp, cart (default: the route's name)")]
SessionQ = Annotated[str | None, Query(min_length=1, max_length=256, description="the visitor's session, kept "
                                       "with the impression")]
PathId = Annotated[str, Path(min_length=1, max_length=256)]
ERRORS = {
    404: {"model": ErrorResponse, "description": "unknown id"},
    503: {"model": ErrorResponse, "description": "no model loaded / store unavailable"},
}


async def filters(  # async: no I/O, so no thread hand-off (see ..deps)
    available_only: Annotated[bool, Query(description="drop items marked unavailable")] = False,
    category: Annotated[str | None, Query(max_length=256, description="keep items in this category")] = None,
    min_price: Annotated[float | None, Query(ge=0)] = None,
    max_price: Annotated[float | None, Query(ge=0)] = None,
) -> Filters:
    try:
        return Filters(available_only=available_only, category=category, min_price=min_price, max_price=max_price)
    except ValidationError as exc:  # a 422 naming the query parameter, not a 500
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"]) if e["loc"] else ("query", "min_price")} for e in exc.errors(include_url=False)]
        ) from None


def model_info(served: Served) -> ModelInfo:
    return ModelInfo(
        name=served.name, version=served.version, run=str(served.run.folder), loaded_at=served.loaded_at,
        retrieval=served.retrieval,
    )


def scored(service: RecommendationService, ranked: Ranked, served: Served | None = None) -> list[ScoredItem]:
    titles = service.titles(ranked.item_ids, served, ranked.idx)
    return [ScoredItem(item_id=i, score=s, title=titles.get(i)) for i, s in zip(ranked.item_ids, ranked.scores)]


Explain = Annotated[bool, Query(description="add an explanation (reasons + sentence) to every item")]


def explained(
    request: Request, items: list[ScoredItem], service: RecommendationService, served: Served,
    history: Sequences, ranked: Ranked, exclude_history: bool, flt: Filters | None,
) -> list[ScoredItem]:
    """``items`` (scored from ``ranked``) with their explanations, each with the business
    rules that moved that item."""
    cache: ExplainerCache = request.app.state.explainers
    found = explain_ranked(cache, service, served, history, ranked, exclude_history, flt)
    moves = rule_moves(ranked)
    by_item: dict[str, list[RuleMoveOut]] = {}
    for m in moves:
        by_item.setdefault(m.item_id, []).append(m)
    found = [e.model_copy(update={"business_rules": by_item.get(item.item_id, [])}) for item, e in zip(items, found)]
    return [item.model_copy(update={"explanation": e}) for item, e in zip(items, found)]


async def rerank_options(  # async: no I/O (see filters)
    diversity: Annotated[float | None, Query(ge=0.0, le=1.0, description="MMR diversity weight, 0..1 (default off)")] = None,
    max_per_category: Annotated[int | None, Query(ge=1, le=100, description="at most N items of one category")] = None,
    new_item_slots: Annotated[int | None, Query(ge=0, le=10, description="new products guaranteed in the answer "
                                                "(default: SHOPFORMER_NEW_ITEM_SLOTS)")] = None,
    new_item_policy: Annotated[str | None, Query(pattern="^(best|thompson)$", description="best | thompson")] = None,
) -> RerankOptions:
    return RerankOptions(diversity=diversity, max_per_category=max_per_category, new_item_slots=new_item_slots,
                         new_item_policy=new_item_policy)


def reranked(service: RecommendationService, options: RerankOptions, where: tuple[str, ...], run):  # noqa: ANN001, ANN201
    """``run(options)`` with this request's re-ranking; a re-ranking the model cannot do is a 422 naming the field."""
    try:
        return run(options.apply_to(service.reranking))
    except RerankUnavailable as exc:
        raise RequestValidationError([{"type": "value_error", "loc": (*where, exc.field), "msg": str(exc),
                                       "input": getattr(options, exc.field)}]) from None


def rule_moves(ranked: Ranked) -> list[RuleMoveOut]:
    """The answer's ``rules`` field: what the business rules did."""
    return [RuleMoveOut(**m.to_dict()) for m in ranked.rules]


@router.get("/users/{user_id}/recommendations", response_model=RecommendationResponse,
            dependencies=[Depends(require_read)], responses={**ERRORS, **READ_ERRORS})
async def user_recommendations(
    user_id: PathId,
    request: Request,
    service: Annotated[RecommendationService, Depends(get_service)],
    flt: Annotated[Filters, Depends(filters)],
    response: Response,
    k: K = 10,
    exclude_history: Annotated[bool | None, Query(
        description="leave out items already in the history; unset: left out unless the run learned "
                    "repeat purchases (`shopformer repeats`), which then compete with the rest")] = None,
    explain: Explain = False,
    placement: PlacementQ = None,
    session_id: SessionQ = None,
    rerank: Annotated[RerankOptions, Depends(rerank_options)] = RerankOptions(),
) -> RecommendationResponse:
    """Top-k for a user, re-encoded from the user's latest events in the store (an event
    posted now changes the next answer). Users with no usable history get the model's
    empty-history scores (``strategy: popularity``). Events of types the model does not
    read are counted in ``ignored_event_types``. ``explain=true`` adds an
    ``explanation`` to every item. Needs a key with the ``read`` scope once the server
    has any key (the answer is drawn from the customer's history). While an A/B
    experiment runs, the customer's variant's run answers."""
    served, experiment, variant = service.for_user(user_id)
    if exclude_history is None:
        exclude_history = served.run.repeats is None
    ranked, n = reranked(service, rerank, ("query",),
                         lambda o: service.recommend_user(served, user_id, k, exclude_history, flt, o))
    items = scored(service, ranked, served)
    if explain:  # the same cached history the ranking read
        history = service.history(served, user_id).sequences
        items = explained(request, items, service, served, history, ranked, exclude_history, flt)
    request_id = answered(request, response, route="user_recommendations", items=ranked.item_ids, placement=placement,
                          served=served, strategy=ranked.strategy, user_id=user_id, session_id=session_id,
                          experiment=experiment, variant=variant)
    return RecommendationResponse(
        request_id=request_id,
        user_id=user_id,
        items=items,
        model=model_info(served),
        strategy=ranked.strategy,
        history_length=n,
        known_user=user_id in served.run.users,
        ignored_event_types=ranked.ignored_types,
        rules=rule_moves(ranked),
        reranked=[RerankShiftOut(**s.to_dict()) for s in ranked.reranked],
    )


@router.post("/recommendations/session", response_model=RecommendationResponse,
             responses={**ERRORS, 413: {"model": ErrorResponse, "description": "body too large"}})
async def session_recommendations(
    body: SessionRequest, request: Request, response: Response,
    service: Annotated[RecommendationService, Depends(get_service)],
) -> RecommendationResponse:
    """Top-k for an anonymous visitor from the item ids they touched (oldest first);
    ``"explain": true`` adds an ``explanation`` to every item."""
    served = service.require()
    ranked, n, ignored = reranked(service, body.rerank, ("body", "rerank"), lambda o: service.recommend_items(
        served, body.item_ids, body.k, body.exclude_history, body.filters, o))
    items = scored(service, ranked, served)
    if body.explain:  # the history recommend_items scored: the known items, in order
        idx = served.run.items.encode(body.item_ids) if body.item_ids else np.zeros(0, dtype=np.int64)
        history = Sequences(np.array([0, int((idx > 0).sum())]), idx[idx > 0])
        items = explained(request, items, service, served, history, ranked, body.exclude_history, body.filters)
    request_id = answered(request, response, route="session", items=ranked.item_ids, placement=body.placement,
                          served=served, strategy=ranked.strategy, session_id=body.session_id)
    return RecommendationResponse(
        request_id=request_id,
        items=items,
        model=model_info(served),
        strategy=ranked.strategy,
        history_length=n,
        ignored_item_ids=ignored,
        rules=rule_moves(ranked),
        reranked=[RerankShiftOut(**s.to_dict()) for s in ranked.reranked],
    )


@router.get("/items/{item_id}/similar", response_model=SimilarResponse, responses=ERRORS)
async def similar_items(
    item_id: PathId,
    request: Request,
    response: Response,
    service: Annotated[RecommendationService, Depends(get_service)],
    flt: Annotated[Filters, Depends(filters)],
    k: K = 10,
    placement: PlacementQ = None,
    session_id: SessionQ = None,
) -> SimilarResponse:
    """Items most similar to ``item_id`` according to the served model."""
    served = service.require()
    try:
        ranked = service.similar(served, item_id, k, flt)
    except UnknownItemError:
        in_catalog = service.store.get_product(item_id) is not None
        why = "is in the catalog but the model has not been trained on it" if in_catalog else "is unknown"
        raise HTTPException(404, f"item {item_id!r} {why}; no similar items") from None
    request_id = answered(request, response, route="similar", items=ranked.item_ids, placement=placement,
                          served=served, strategy="similar", session_id=session_id)
    return SimilarResponse(item_id=item_id, items=scored(service, ranked, served), model=model_info(served),
                           request_id=request_id, rules=rule_moves(ranked))
