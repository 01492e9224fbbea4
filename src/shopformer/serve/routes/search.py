"""Product search and autocomplete.

A search is a plain function, run in FastAPI's thread pool: much of its time is the query
encoder (ONNX Runtime) and the index searches (FAISS, Tantivy), which release the GIL, so
two searches run at once on two CPUs (the recommendation routes are async instead: their
work holds the GIL). It returns its JSON itself: FastAPI would otherwise validate the
answer against the response model a second time, in a second trip through the thread
pool. Autocomplete is a few binary searches: async."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from shopformer.rank.rules import Audience
from shopformer.search import SearchFilter
from shopformer.search.searcher import scores_by_item

from shopformer.store.access import READ

from ..access import authorize
from ..deps import get_service
from ..feedback import HEADER, answered
from ..recommender import RecommendationService
from ..search import SearchNotReady
from ..schemas import (PLACEMENT_PATTERN, ErrorResponse, Facets, RuleMoveOut, SearchItem, SearchResponse,
                       SuggestionOut, SuggestResponse)
from .events import READ_ERRORS
from .recommend import model_info

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_QUERY = 2048
MAX_SEARCH_K = 100
#: every query parameter the search route knows; others are refused (a misspelt filter
#: such as ``categroy=`` would otherwise be silently ignored)
SEARCH_PARAMS = {"q", "k", "user_id", "category", "brand", "min_price", "max_price", "available_only", "placement",
                 "session_id"}
ERRORS = {503: {"model": ErrorResponse, "description": "the search index is being built"}}


def _search_service(request: Request):  # noqa: ANN202
    found = request.app.state.search
    if found is None:
        raise SearchNotReady("search is off on this server (SHOPFORMER_SEARCH=0)")
    return found


def _known_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name), "msg": f"unknown parameter; known: {', '.join(sorted(allowed))}",
             "input": request.query_params[name][:100]} for name in unknown])


Q = Annotated[str, Query(min_length=1, max_length=MAX_QUERY, description="what the customer typed")]


@router.get("", response_model=SearchResponse, responses={**ERRORS, **READ_ERRORS})
def search(
    request: Request,
    q: Q,
    service: Annotated[RecommendationService, Depends(get_service)],
    k: Annotated[int, Query(ge=1, le=MAX_SEARCH_K)] = 10,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256, description="personalize for this user")] = None,
    category: Annotated[list[str] | None, Query(max_length=50, description="keep products in any of these categories")] = None,
    brand: Annotated[list[str] | None, Query(max_length=50, description="keep products of any of these brands")] = None,
    min_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    max_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    available_only: Annotated[bool, Query(description="drop products marked unavailable")] = False,
    placement: Annotated[str | None, Query(pattern=PLACEMENT_PATTERN, description="where the answer is shown "
                                           "(default: search)")] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256, description="the visitor's session, "
                                            "kept with the impression")] = None,
) -> Response:
    """Products for a query: lexical (BM25 over title, brand, categories, attributes,
    description; units, numbers and typos handled) fused with product text vectors,
    re-ranked when a trained re-ranker is installed, and personalized with ``user_id``
    by the served model (when the search config gives personalization a weight;
    ``user_id`` needs a key with the ``read`` scope once the server has any key).
    Facets count the top results by category, brand, price band and availability."""
    _known_params(request, SEARCH_PARAMS)
    try:
        flt = SearchFilter(categories=tuple(category or ()), brands=tuple(brand or ()), min_price=min_price,
                           max_price=max_price, available_only=available_only)
    except ValueError as exc:
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "min_price"), "msg": str(exc),
                                       "input": min_price}]) from None
    if user_id is not None:  # a personalized answer is drawn from the customer's history
        authorize(request, READ)
    searching = _search_service(request)
    searcher = searching.require()
    with searching.slots:
        personal, served, arm = None, None, (None, None)
        if user_id is not None and searcher.config.personal_weight > 0:
            personal, served, arm = _personal(service, user_id)
        # business rules (rank/rules.py): on more candidates than k, so excluded and buried
        # products leave enough; a pin moves a product that matched the query, never inserts one
        step = service.rules.step(Audience(user_id, lambda: _has_history(service, user_id)), query=q)
        result = searcher.search(q, k if step is None else step.fetch(k), flt, personal=personal)
    hits, moves = result.hits, []
    if step is not None:
        out = step.apply([h.item_id for h in hits], [h.score for h in hits], k)
        by_id = {h.item_id: h for h in hits}
        hits, moves = [by_id[i] for i in out.item_ids], out.moves
    items = [SearchItem(item_id=h.item_id, title=h.title, score=round(h.score, 6), lexical=round(h.lexical, 6),
                        cosine=round(h.cosine, 6)) for h in hits]
    ranker = served if served is not None and "personal" in result.strategy else None
    experiment, variant = arm if ranker is not None else (None, None)  # an experiment's run re-ranked it
    request_id = answered(request, None, route="search", items=[h.item_id for h in hits], placement=placement,
                          served=ranker, strategy=result.strategy, user_id=user_id, session_id=session_id,
                          experiment=experiment, variant=variant)
    answer = SearchResponse(query=result.query, corrected_query=result.corrected_query, strategy=result.strategy,
                            items=items, facets=Facets(**result.facets), candidates=result.candidates, user_id=user_id,
                            model=model_info(ranker) if ranker is not None else None, request_id=request_id,
                            rules=[RuleMoveOut(**m.to_dict()) for m in moves])
    return Response(answer.model_dump_json(), media_type="application/json", headers={HEADER: request_id})


def _has_history(service: RecommendationService, user_id: str | None) -> bool:
    """Whether a rule audience of ``known`` / ``new`` sees this searcher as a customer
    with a history (the served model's read of their events; False without a model)."""
    if user_id is None or service.served is None:
        return False
    served, _, _ = service.for_user(user_id)
    return service.history(served, user_id).length > 0


def _personal(service: RecommendationService, user_id: str):  # noqa: ANN202
    """(the user's model scores for given item ids (NaN for items the model lacks), the
    run, (experiment, variant)), or Nones without a model or without a usable history."""
    if service.served is None:
        return None, None, (None, None)
    served, experiment, variant = service.for_user(user_id)  # the customer's variant's run in an experiment
    history = service.history(served, user_id)
    if not history.length:
        return None, None, (None, None)
    scores = scores_by_item(np.asarray(served.run.model.score(history.sequences))[0], served.run.items)
    return scores, served, (experiment, variant)


@router.get("/suggest", response_model=SuggestResponse, responses=ERRORS)
async def suggest(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY, description="what has been typed so far")] = "",
    k: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SuggestResponse:
    """Completions of a partly typed query: past searches that start with it (most
    searched first), the typed words completed with the catalog's words, then a few
    products (their titles) that the completed text finds."""
    _known_params(request, {"q", "k"})
    found = _search_service(request).require().suggest(q, k)
    return SuggestResponse(query=q, suggestions=[SuggestionOut(text=s.text, kind=s.kind, count=s.count, item_id=s.item_id)
                                                 for s in found])
