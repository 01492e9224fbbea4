"""Complements: ``GET /v1/items/{id}/complements`` ("frequently bought together") and
``POST /v1/recommendations/cart`` ("complete your basket").

Plain functions (FastAPI's thread pool): the first request after a start, reload or
refresh counts the store's baskets (serve/complements.py). Answers carry a
``request_id``, are logged as impressions and pass through the business rules like
every recommending answer. An unknown item is a 404 (path) or a 422 naming the body
field and the ids (cart).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError

from shopformer.store.access import READ

from ..access import authorize
from ..complements import ComplementsService, ServeComplementsConfig, UnknownCartItems
from ..complements_schemas import CartRequest, ComplementsResponse
from ..deps import get_service
from ..feedback import answered
from ..recommender import Ranked, RecommendationService, Served
from ..schemas import ErrorResponse, Filters
from .events import READ_ERRORS
from .recommend import ERRORS, K, PathId, PlacementQ, SessionQ, filters, model_info, rule_moves, scored

router = APIRouter(prefix="/v1", tags=["recommendations"])
_create = threading.Lock()


def get_complements(request: Request) -> ComplementsService:
    """The app's ComplementsService, made on first use (no cost for servers that never ask)."""
    found = getattr(request.app.state, "complements", None)
    if found is None:
        with _create:
            found = getattr(request.app.state, "complements", None)
            if found is None:
                found = ComplementsService(ServeComplementsConfig(), request.app.state.service.store)
                request.app.state.complements = found
    return found


def _answer(request: Request, response: Response, service: RecommendationService, comp: ComplementsService,
            served: Served, ranked: Ranked, cart: list[str], route: str, placement: str | None,
            session_id: str | None, user_id: str | None = None) -> ComplementsResponse:
    request_id = answered(request, response, route=route, items=ranked.item_ids, placement=placement, served=served,
                          strategy="complements", user_id=user_id, session_id=session_id)
    built = comp.built(served)
    config = comp.config
    return ComplementsResponse(
        request_id=request_id, item_ids=cart, user_id=user_id, items=scored(service, ranked, served),
        model=model_info(served), baskets_counted=built.baskets, rules=rule_moves(ranked),
        settings={"copurchase": asdict(config.copurchase), **asdict(config.complements)},
    )


@router.get("/items/{item_id}/complements", response_model=ComplementsResponse, responses=ERRORS)
def item_complements(
    item_id: PathId,
    request: Request,
    response: Response,
    service: Annotated[RecommendationService, Depends(get_service)],
    comp: Annotated[ComplementsService, Depends(get_complements)],
    flt: Annotated[Filters, Depends(filters)],
    k: K = 10,
    placement: PlacementQ = None,
    session_id: SessionQ = None,
) -> ComplementsResponse:
    """Items bought together with ``item_id`` (not items like it: near-substitutes are
    left out)."""
    served = service.require()
    try:
        ranked = comp.cart(service, served, [item_id], k, flt)
    except UnknownCartItems:
        in_catalog = service.store.get_product(item_id) is not None
        why = "is in the catalog but the model has not been trained on it" if in_catalog else "is unknown"
        raise HTTPException(404, f"item {item_id!r} {why}; no complements") from None
    return _answer(request, response, service, comp, served, ranked, [item_id], "complements", placement, session_id)


@router.post("/recommendations/cart", response_model=ComplementsResponse,
             responses={**ERRORS, **READ_ERRORS, 413: {"model": ErrorResponse, "description": "body too large"}})
def cart_recommendations(
    body: CartRequest, request: Request, response: Response,
    service: Annotated[RecommendationService, Depends(get_service)],
    comp: Annotated[ComplementsService, Depends(get_complements)],
) -> ComplementsResponse:
    """Complete the cart ``item_ids``: items bought with them, never a cart item or a
    near-substitute of one. With ``user_id`` (read scope) the sequence model also reads
    the customer's history before the cart."""
    if body.user_id is not None:  # the answer is then drawn from the customer's history
        authorize(request, READ)
        pseudonyms = getattr(request.app.state, "pseudonyms", None)
        if pseudonyms is not None:  # the edge maps paths and queries, not bodies: map it here
            try:
                body.user_id = pseudonyms.user(body.user_id)
            except ValueError as exc:  # another key's pseudonym
                raise RequestValidationError([{"type": "value_error", "loc": ("body", "user_id"), "msg": str(exc),
                                               "input": body.user_id}]) from None
    served = service.require()
    try:
        ranked = comp.cart(service, served, body.item_ids, body.k, body.filters, body.user_id)
    except UnknownCartItems as exc:
        raise RequestValidationError([
            {"type": "unknown_item", "loc": ("body", "item_ids", pos),
             "msg": f"item {item!r} is unknown to the served model", "input": item}
            for pos, item in zip(exc.positions, exc.item_ids)
        ]) from None
    return _answer(request, response, service, comp, served, ranked, body.item_ids, "cart", body.placement,
                   body.session_id, body.user_id)
