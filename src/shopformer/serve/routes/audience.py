"""Audiences for campaigns and ads: the customers most likely to buy an item
(``GET /v1/items/{id}/audience``) or any item of a category (``GET /v1/audience?category=``).

An audience names many customers at once (a bulk read of customers' data, made to be
exported to an ad or mail tool), so it needs an ``admin`` key, and every answer is
written to the audit log (the item or category and how many customers were named, no
customer id). Plain functions (FastAPI's thread pool): the first request after a start,
reload or refresh builds the customers' states from the whole store (serve/audience.py).
Business rules are not applied: they re-order items, and an audience ranks customers.
"""

from __future__ import annotations

import threading
from typing import Annotated

import numpy as np
import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from shopformer.rank.audience import AudienceConfig, AudienceList

from ..access import Principal, audit
from ..audience import AudienceService, AudienceStates, NoUserVectors
from ..audience_schemas import MAX_AUDIENCE_K, AudienceMember, AudienceResponse
from ..deps import get_service, require_admin
from ..feedback import answered
from ..recommender import RecommendationService, Served
from ..schemas import ErrorResponse
from .events import READ_ERRORS
from .recommend import PlacementQ, model_info

router = APIRouter(prefix="/v1", tags=["audiences"])

K = Annotated[int, Query(ge=1, le=MAX_AUDIENCE_K, description=f"customers to name, 1..{MAX_AUDIENCE_K}")]
ERRORS = {
    **READ_ERRORS,
    404: {"model": ErrorResponse, "description": "unknown item / category"},
    409: {"model": ErrorResponse, "description": "the served model has no user vectors (a baseline)"},
    503: {"model": ErrorResponse, "description": "no model loaded / store unavailable"},
}
_create = threading.Lock()


def get_audiences(request: Request) -> AudienceService:
    """The app's AudienceService, made on first use (no cost for servers that never ask)."""
    found = getattr(request.app.state, "audiences", None)
    if found is None:
        with _create:
            found = getattr(request.app.state, "audiences", None)
            if found is None:
                settings = request.app.state.settings
                found = AudienceService(AudienceConfig(history_limit=settings.history_limit),
                                        request.app.state.service.store, settings.audience_refresh_s)
                request.app.state.audiences = found
    return found


def _states(audiences: AudienceService, served: Served) -> AudienceStates:
    try:
        return audiences.states(served)
    except NoUserVectors as exc:
        raise HTTPException(409, str(exc)) from None


def _answer(request: Request, response: Response, principal: Principal, served: Served, states: AudienceStates,
            found: AudienceList, what: dict, n_items: int, shown: list[str], placement: str | None) -> AudienceResponse:
    audit(request, principal, "audience", f"{'item' if 'item_id' in what else 'category'}:"
          f"{what.get('item_id') or what.get('category')}", "ok", {"customers": len(found.user_ids)})
    learned = states.learned is not None and "item_id" in what
    scoring = ({"method": "learned_ranker", **states.learned.ranker.config.__dict__} if learned
               else states.audience.config.__dict__)
    request_id = answered(request, response, route="audience", items=shown, placement=placement, served=served,
                          strategy="learned_ranker" if learned else states.audience.config.score)
    members = [AudienceMember(user_id=u, score=round(s, 6), rank=r + 1)
               for r, (u, s) in enumerate(zip(found.user_ids, found.scores))]
    return AudienceResponse(request_id=request_id, **what, items_scored=n_items, customers=members,
                            customers_indexed=len(states.audience), states_built_at=states.built_at,
                            scoring=scoring, model=model_info(served))


@router.get("/items/{item_id}/audience", response_model=AudienceResponse, responses=ERRORS)
def item_audience(
    request: Request,
    response: Response,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    service: Annotated[RecommendationService, Depends(get_service)],
    audiences: Annotated[AudienceService, Depends(get_audiences)],
    principal: Annotated[Principal, Depends(require_admin)],
    k: K = 1000,
    placement: PlacementQ = None,
) -> AudienceResponse:
    """The ``k`` customers most likely to buy ``item_id`` next, best first: each customer's
    user vector from their latest events (the vector their recommendations use) scored
    against the item's (rank/audience.py), or, when the run holds a fitted audience ranker,
    ranked by it (rank/audience_learned.py). Needs an ``admin`` key; audited."""
    served = service.require()
    if item_id not in served.run.items:
        in_catalog = service.store.get_product(item_id) is not None
        why = "is in the catalog but the model has not been trained on it" if in_catalog else "is unknown"
        raise HTTPException(404, f"item {item_id!r} {why}; no audience")
    states = _states(audiences, served)
    found = (states.learned or states.audience).for_item(served.run.items.index(item_id), k)
    return _answer(request, response, principal, served, states, found, {"item_id": item_id}, 1, [item_id], placement)


@router.get("/audience", response_model=AudienceResponse, responses=ERRORS)
def category_audience(
    request: Request,
    response: Response,
    category: Annotated[str, Query(min_length=1, max_length=256, description="the category whose items count")],
    service: Annotated[RecommendationService, Depends(get_service)],
    audiences: Annotated[AudienceService, Depends(get_audiences)],
    principal: Annotated[Principal, Depends(require_admin)],
    k: K = 1000,
    placement: PlacementQ = None,
) -> AudienceResponse:
    """The ``k`` customers most likely to buy any item of ``category`` next (the log of
    their summed probabilities over the category's items the model knows, by default).
    Needs an ``admin`` key; audited."""
    served = service.require()
    products = service.store.products(columns=("item_id", "categories"))
    ids = products.filter(pl.col("categories").list.contains(category))["item_id"]
    idx = served.run.items.encode(ids) if len(ids) else np.zeros(0, dtype=np.int64)
    idx = np.unique(idx[idx > 0])
    if not len(idx):
        raise HTTPException(404, f"category {category!r} has no product the served model knows; no audience")
    states = _states(audiences, served)
    found = states.audience.for_items(idx, k)
    return _answer(request, response, principal, served, states, found, {"category": category}, len(idx),
                   served.run.items.decode(idx[:100]), placement)
