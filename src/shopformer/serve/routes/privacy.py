"""Privacy requests: erasure (``DELETE /v1/users/{id}``) and access (``GET /v1/users/{id}/export``).

Both are admin actions (a key with the ``admin`` scope) and both are written to the
audit log, naming the customer only by the SHA-256 of their id, as erasure receipts do.
Both are plain functions (FastAPI's thread pool): the erasure commits, checkpoints
and may vacuum, the export reads a whole history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from shopformer.privacy import ModelView, export_user, forget
from shopformer.privacy.requests import OUTSIDE, audit_target, erasure_detail


from ..access import Principal, audit
from ..deps import get_service, require_admin
from ..recommender import RecommendationService, Served
from ..schemas import ErasureResponse, UserExport
from .events import WRITE_ERRORS

router = APIRouter(prefix="/v1", tags=["privacy"])

UserId = Annotated[str, Path(min_length=1, max_length=256)]
KEYED = {k: v for k, v in WRITE_ERRORS.items() if k != 413}


def _model(served: Served | None) -> ModelView | None:
    return None if served is None else ModelView(served.version, served.run.users)


@router.delete("/users/{user_id}", response_model=ErasureResponse, responses=KEYED)
def erase_user(
    request: Request,
    user_id: UserId,
    service: Annotated[RecommendationService, Depends(get_service)],
    principal: Annotated[Principal, Depends(require_admin)],
) -> ErasureResponse:
    """Erase a customer: every stored event of theirs (searches included: the query log)
    is deleted in one transaction and its bytes scrubbed from the database (SQLite:
    secure_delete, WAL checkpointed and truncated; PostgreSQL: VACUUM), their cached
    history is dropped here and, through the store, in every other process, and their
    searches leave autocomplete. The answer is the receipt: what was removed where, when,
    and ``pending_retrain`` while the served model was trained on them (``complete``,
    with the model version, once a run trained without them is published). Erasing a
    user with nothing stored answers a receipt with zero rows."""
    store = service.store
    queries = store.user_query_counts(user_id)  # before the rows go: autocomplete takes these back
    request.app.state.feedback.flush()  # answers this process showed them are in the store, so the receipt counts them
    try:
        receipt = forget(store, user_id, _model(service.served))
    except Exception as exc:
        audit(request, principal, "erase_user", audit_target(user_id), "failed", {"error": str(exc)[:500]})
        raise
    audit(request, principal, "erase_user", audit_target(user_id), "ok", erasure_detail(receipt))
    service.forget_cached(user_id, receipt.receipt_id)
    search = request.app.state.search
    taken = search.forget_queries(queries) if search is not None else 0
    caches = {"history_cache": "dropped in this process",
              "autocomplete_queries_removed": taken,
              "other_processes": "workers and replicas on this store drop the user's cached history at once with "
                                 "SHOPFORMER_CACHE_CHECK (serve --workers sets it), else within SHOPFORMER_SYNC_S "
                                 "seconds, and take the queries back out of their autocomplete then"}
    return ErasureResponse(**receipt.to_dict(), caches=caches, notes=list(OUTSIDE))


@router.get("/users/{user_id}/export", response_model=UserExport, responses=KEYED)
def export(
    request: Request,
    user_id: UserId,
    service: Annotated[RecommendationService, Depends(get_service)],
    principal: Annotated[Principal, Depends(require_admin)],
) -> UserExport:
    """Everything stored about a customer (right of access): every event with every
    field (context included), every answer shown to them (impressions), the erasure
    receipts that name them, and whether the served model was trained on their events."""
    request.app.state.feedback.flush()  # answers this process showed them just now are in the export
    found = export_user(service.store, user_id, _model(service.served))
    audit(request, principal, "export_user", audit_target(user_id), "ok", {"events": len(found["events"])})
    return UserExport(**found)
