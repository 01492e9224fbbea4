"""Admin: API keys (make, list, revoke) and the audit log. Every route needs a key with
the ``admin`` scope; key changes are audited. Plain functions: each is a store round trip."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from shopformer.store.access import AccessError, audit_entries, create_key, list_keys, revoke_key

from ..access import KeyRing, Principal, audit
from ..deps import get_service, require_admin
from ..recommender import RecommendationService
from ..schemas import AuditEntryOut, AuditLog, ErrorResponse, KeyOut, KeyRequest, NewKey
from .events import READ_ERRORS

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ERRORS = {**READ_ERRORS, 503: {"model": ErrorResponse, "description": "no key exists and admin actions are off"}}


def _keyring(request: Request) -> KeyRing:
    return request.app.state.keyring


@router.post("/keys", response_model=NewKey, status_code=status.HTTP_201_CREATED, responses=ERRORS)
def make_key(
    body: KeyRequest,
    request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> NewKey:
    """Make an API key. The answer holds the key itself, this once: the store keeps only
    its SHA-256. Every process on the store accepts it from its first use."""
    try:
        record, secret = create_key(service.store, body.name, body.scopes, body.rate_limit)
    except AccessError as exc:
        raise HTTPException(422, str(exc)) from None
    _keyring(request).refresh(force=True)
    audit(request, principal, "create_key", record.key_id, "ok",
          {"name": record.name, "scopes": list(record.scopes), "rate_limit": record.rate_limit})
    return NewKey(key=secret, **record.to_dict())


@router.get("/keys", response_model=list[KeyOut], responses=ERRORS)
def keys(
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
    include_revoked: Annotated[bool, Query()] = False,
) -> list[KeyOut]:
    """The stored keys (never their secrets), oldest first."""
    return [KeyOut(**k.to_dict()) for k in list_keys(service.store, include_revoked)]


@router.delete("/keys/{key_id}", response_model=KeyOut,
               responses={**ERRORS, 404: {"model": ErrorResponse, "description": "no such key"}})
def revoke(
    key_id: Annotated[str, Path(min_length=1, max_length=32)],
    request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> KeyOut:
    """Revoke a key: refused by this process at once, by the other processes on the store
    within ``SHOPFORMER_SYNC_S`` seconds. The key stays listed (``include_revoked``) so
    the audit log's references to it stay readable."""
    try:
        record = revoke_key(service.store, key_id)
    except AccessError as exc:
        raise HTTPException(404, str(exc)) from None
    _keyring(request).refresh(force=True)
    audit(request, principal, "revoke_key", key_id, "ok", {"name": record.name})
    return KeyOut(**record.to_dict())


@router.get("/audit", response_model=AuditLog, responses=ERRORS)
def audit_log(
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
    after: Annotated[int, Query(ge=0, le=2**62, description="entries after this id (0: from the first)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=64, description="only this action, e.g. erase_user")] = None,
) -> AuditLog:
    """Admin actions, oldest first: reloads, key changes, erasures, access exports, retention."""
    entries = audit_entries(service.store, after, limit, action)
    return AuditLog(entries=[AuditEntryOut(**e.to_dict()) for e in entries],
                    next_after=entries[-1].entry_id if entries else after)
