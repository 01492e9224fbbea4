"""Business rules through the API (admin scope; every change is in the audit log): add,
list, remove. The same functions as ``shopformer rules ...``; what the rules do is in
:mod:`shopformer.rank.rules`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from shopformer.store.rules import RuleError, add_rule, all_rules, check_rule, remove_rule

from ..access import Principal, audit
from ..deps import get_service, require_admin
from ..recommender import RecommendationService
from ..schemas import ErrorResponse
from .events import WRITE_ERRORS

router = APIRouter(prefix="/v1/admin/rules", tags=["rules"])


class MatchIn(BaseModel):
    """Exactly one of these (checked by :func:`~shopformer.store.rules.check_rule`)."""

    model_config = ConfigDict(extra="forbid")
    category: str | None = Field(default=None, max_length=256, description="any level of the category path")
    brand: str | None = Field(default=None, max_length=256)
    tag: str | None = Field(default=None, max_length=256)
    items: list[str] | None = Field(default=None, max_length=1000, description="item ids; a pin names one")
    unavailable: Literal[True] | None = Field(default=None, description="products marked unavailable")


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "boost", "match": {"brand": "acme"}, "weight": 0.5},
        {"kind": "pin", "match": {"items": ["SKU-1"]}, "position": 1, "starts_at": "2026-12-01T00:00:00Z",
         "ends_at": "2026-12-27T00:00:00Z"},
        {"kind": "exclude", "match": {"unavailable": True}},
        {"kind": "exclude", "match": {"tag": "age-restricted"}, "audience": "new"},
        {"kind": "boost", "match": {"brand": "acme"}, "weight": 1, "queries": ["cordless drill"]}]})
    kind: Literal["boost", "bury", "pin", "exclude"]
    match: MatchIn = Field(description='one of {"category"|"brand"|"tag": text}, {"items": [ids]}, '
                                       '{"unavailable": true}; a pin names one item')
    weight: float = Field(default=0.0, allow_inf_nan=False,
                          description="boost / bury: added to / taken from the normalized score (0, 100]")
    position: int | None = Field(default=None, ge=1, le=100, description="pin: the 1-based position")
    priority: int = Field(default=0, ge=-1000, le=1000, description="pin: the higher wins a contested position")
    starts_at: datetime | None = Field(default=None, description="UTC, with its offset; default: now")
    ends_at: datetime | None = Field(default=None, description="UTC, with its offset; default: never")
    audience: str | list[str] = Field(default="all", max_length=1000, description='"all", "known" (customers with a history), '
                                                                 '"new" (none) or a list of user ids')
    note: str | None = Field(default=None, max_length=500)
    queries: list[str] | None = Field(default=None, max_length=100, description=(
        "search only: the rule applies to queries holding one of these phrases as whole words "
        "(case-insensitive), never to recommendations; default: every answer"))


class RuleOut(BaseModel):
    rule_id: int
    kind: str
    match: dict[str, Any]
    weight: float
    position: int | None = None
    priority: int
    audience: str | list[str]
    note: str | None = None
    starts_at: str | None = None
    ends_at: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    queries: list[str] | None = None


@router.post("", response_model=RuleOut, status_code=201,
             responses={400: {"model": ErrorResponse, "description": "refused: bad rule"}, **WRITE_ERRORS})
def add(
    body: RuleIn, request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> RuleOut:
    """Add a rule. This process applies it from its answer on; the others within
    ``SHOPFORMER_SYNC_S`` seconds (at once with ``SHOPFORMER_REDIS_URL``)."""
    try:
        rule = check_rule(body.kind, body.match.model_dump(exclude_none=True), body.weight, body.position, body.priority, body.starts_at,
                          body.ends_at, body.audience, body.note, body.queries)
    except RuleError as exc:
        audit(request, principal, "rule_add", body.kind, "failed", {"error": str(exc)[:500]})
        raise HTTPException(400, str(exc)) from None
    stored = add_rule(service.store, rule, principal.actor)
    audit(request, principal, "rule_add", str(stored.rule_id), "ok", _detail(stored.to_dict()))
    service.rules.sync()
    service.shared.publish_rules()  # the other replicas reload them at once
    return RuleOut(**stored.to_dict())


@router.get("", response_model=list[RuleOut], dependencies=[Depends(require_admin)], responses=WRITE_ERRORS)
def list_(service: Annotated[RecommendationService, Depends(get_service)]) -> list[RuleOut]:
    """Every stored rule, oldest first (also those outside their window)."""
    return [RuleOut(**r.to_dict()) for r in all_rules(service.store)]


@router.delete("/{rule_id}", response_model=RuleOut,
               responses={404: {"model": ErrorResponse, "description": "unknown rule"}, **WRITE_ERRORS})
def remove(
    rule_id: Annotated[int, Path(ge=1, le=2**62)], request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> RuleOut:
    """Remove a rule; answers what it was."""
    try:
        removed = remove_rule(service.store, rule_id)
    except RuleError as exc:
        raise HTTPException(404, str(exc)) from None
    audit(request, principal, "rule_remove", str(rule_id), "ok", _detail(removed.to_dict()))
    service.rules.sync()
    service.shared.publish_rules()  # the other replicas reload them at once
    return RuleOut(**removed.to_dict())


def _detail(rule: dict[str, Any]) -> dict[str, Any]:
    """The audit entry's detail: the rule without user ids (an audience list names customers)."""
    if isinstance(rule.get("audience"), list):
        rule = {**rule, "audience": f"{len(rule['audience'])} user ids"}
    return rule
