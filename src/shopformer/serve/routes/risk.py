"""Order risk: ``POST /v1/risk/orders`` scores a basket line by line (the probability
that each line is cancelled, with the features that raised it).

The issue asked for ``GET /v1/risk/orders`` "for a posted basket". A GET with a body is
dropped or refused by many clients, proxies and caches, and OpenAPI gives it no body, so
the basket is POSTed (nothing is written: the answer depends only on the body and the
model). The model is the folder ``shopformer risk fit --out DIR`` writes, named by
``SHOPFORMER_RISK_DIR`` and loaded on the first request; without one the route answers
404 saying so (this server serves no order risk), 503 when it cannot be loaded. Reading a customer's history needs the read scope once the server has keys.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from shopformer.store.access import READ

from ..access import authorize
from ..deps import loaded_once, require_admin
from ..risk_schemas import OrderRiskRequest, OrderRiskResponse, UnusualEventsResponse
from ..schemas import ErrorResponse
from .events import READ_ERRORS

router = APIRouter(prefix="/v1", tags=["risk"])
ERRORS = {**READ_ERRORS, 404: {"model": ErrorResponse, "description": "this server serves no order risk "
                                                                     "(no SHOPFORMER_RISK_DIR)"},
          503: {"model": ErrorResponse, "description": "the configured order-risk model cannot be loaded"}}


def get_risk_model(request: Request):
    """The app's OrderRiskModel, loaded from SHOPFORMER_RISK_DIR on first use."""
    folder = getattr(request.app.state.settings, "risk_dir", None)

    def load(path):  # noqa: ANN001, ANN202 - imported here: LightGBM only for servers that score risk
        from shopformer.risk.order_risk import OrderRiskModel

        return OrderRiskModel.load(path)

    return loaded_once(request, "risk_model", folder, load,
                       "no order-risk model: set SHOPFORMER_RISK_DIR to a folder written by "
                       "`shopformer risk fit --data ... --out DIR`",
                       lambda exc: f"the order-risk model in {folder} could not be loaded: {exc}",
                       (FileNotFoundError, ValueError, KeyError))


@router.get("/admin/risk/unusual", response_model=UnusualEventsResponse, dependencies=[Depends(require_admin)],
            responses={k: v for k, v in READ_ERRORS.items()})
def unusual_events(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> UnusualEventsResponse:
    """The latest stored events this process flagged as unusual (bursts, inhuman speed,
    the same event repeated, session volume, purchases of items never viewed), newest
    first, each with its score and reasons (serve/stream_watch.py). Admin scope. Each
    replica lists the events it stored (with SHOPFORMER_REDIS_URL its scorer also sees the
    other replicas' events, so a bot spread over them is flagged); 404 when the watch is
    off (SHOPFORMER_STREAM_WATCH=0)."""
    watch = request.app.state.stream_watch
    if watch is None:
        raise HTTPException(404, "the stream watch is off (SHOPFORMER_STREAM_WATCH=0)")
    return UnusualEventsResponse(users_tracked=watch.users_tracked, threshold=watch.scorer.config.threshold,
                                 flagged=watch.latest(limit))


@router.post("/risk/orders", response_model=OrderRiskResponse, responses=ERRORS)
def order_risk(body: OrderRiskRequest, request: Request) -> OrderRiskResponse:
    """The probability that each line of the basket is cancelled (or returned), from the
    customer's past orders and cancellations, the product and the basket."""
    authorize(request, READ)
    pseudonyms = getattr(request.app.state, "pseudonyms", None)
    if pseudonyms is not None:  # the edge maps paths and queries, not bodies: map it here
        try:
            body.user_id = pseudonyms.user(body.user_id)
        except ValueError as exc:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "user_id"), "msg": str(exc),
                                           "input": body.user_id}]) from None
    model = get_risk_model(request)
    found = model.score(body.user_id, [line.model_dump() for line in body.lines], body.time, body.country)
    evaluation = model.meta.get("evaluation", {}).get("lightgbm", {}).get("test", {})
    info = {"fitted_at": model.meta.get("fitted_at"), "data_end": model.meta.get("data_end"),
            "horizon_days": model.config.split.horizon_days, "kind": "lightgbm",
            "test_auc_roc": evaluation.get("auc_roc"), "test_auc_pr": evaluation.get("auc_pr")}
    return OrderRiskResponse(**found, model=info)
