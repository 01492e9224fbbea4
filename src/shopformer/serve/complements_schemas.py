"""Request and response bodies of the complements routes (serve/routes/complements.py)."""

from __future__ import annotations

from pydantic import Field

from .schemas import (
    MAX_ITEMS,
    MAX_K,
    REQUEST_ID_FIELD,
    RULES_FIELD,
    Count,
    Filters,
    Id,
    ModelInfo,
    Placement,
    RuleMoveOut,
    ScoredItem,
    SessionId,
    _In,
    _Out,
)


class CartRequest(_In):
    """Complete a basket: the items in the cart (any order), optionally the customer."""

    item_ids: list[Id] = Field(min_length=1, max_length=MAX_ITEMS, description="the cart's item ids")
    user_id: Id | None = Field(default=None, description="the customer, whose history the sequence model reads "
                               "before the cart (needs the read scope once the server has keys)")
    k: Count = Field(default=10, ge=1, le=MAX_K)
    filters: Filters = Field(default_factory=Filters)
    placement: Placement | None = Field(default=None, description="where the answer is shown (default: cart)")
    session_id: SessionId | None = Field(default=None, description="the visitor's session, kept with the impression")


class ComplementsResponse(_Out):
    """Items bought with the cart, best first; never a cart item or a near-substitute
    of one (see ``settings``)."""

    item_ids: list[str] = Field(description="the cart (or the one item) the answer completes")
    user_id: str | None = None
    items: list[ScoredItem]
    model: ModelInfo
    strategy: str = Field(default="complements")
    settings: dict = Field(description="how complements are scored: co-purchase settings, sequence weight, "
                           "substitute thresholds")
    baskets_counted: int = Field(description="baskets (sessions) the co-purchase statistics were counted from")
    request_id: str = REQUEST_ID_FIELD
    rules: list[RuleMoveOut] = RULES_FIELD
