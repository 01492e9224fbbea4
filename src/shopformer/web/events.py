"""Storefront events: every click, view, cart change, purchase and search a visitor makes
is posted to the store through the API's own write path (validation, pseudonyms,
durability before the answer, history-cache invalidation, autocomplete counts), when
the visitor may write. A guest's items touched also join their trail (cookie), so their
recommendations follow them even when no event may be stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shopformer.serve.feedback import attribute_events
from shopformer.serve.schemas import EventIn
from shopformer.serve.writes import RowErrors, write_events

from .access import Access
from .shop import Shop
from .visitor import Visitor

#: what the page may post (``remove_from_cart`` and ``purchase`` come from the cart)
KINDS = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "search")
#: kinds that move a guest's trail (a search: the product it finds first, as the API's
#: histories read search events)
TOUCHING = ("view", "click", "add_to_cart", "purchase", "search")


@dataclass(frozen=True)
class Recorded:
    stored: int  # events written to the store
    message: str


def record(shop: Shop, access: Access, visitor: Visitor, kind: str, item_ids: list[str], query: str | None = None,
           request_id: str | None = None) -> Recorded:
    """Post one event per item (one ``search`` event for ``query``) and update the trail.
    ``request_id``: the answer the product was shown in (the events are attributed to it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event type {kind!r}; the storefront posts {', '.join(KINDS)}")
    if kind == "search":
        top = shop.top_item(query or "")
        touched = [top] if top else []
    else:
        touched = item_ids
    if kind in TOUCHING:
        for item in touched:
            visitor.touch(item)
    if not access.write:
        why = ("your key lacks the 'write' scope" if access.signed_in else
               "sign in with a key that has the 'write' scope" if access.keys_required else
               "this server does not allow writes without a key")
        return Recorded(0, f"Not stored ({why}); recommendations here follow what you touched in this browser.")
    customer = shop.browsing_as(access, visitor)
    session = visitor.ensure_id()
    user = customer if customer is not None else session
    try:
        if kind == "search":
            events = [EventIn(user_id=user, type="search", query=query, session_id=session, context=_CONTEXT)]
        else:
            events = [EventIn(user_id=user, type=kind, item_id=i, session_id=session, context=_CONTEXT,
                              request_id=request_id) for i in item_ids]
    except ValidationError as exc:
        raise ValueError(exc.errors(include_url=False)[0]["msg"]) from None
    state = shop.state
    service = shop.service
    try:
        written = write_events(service.store, events, batch=len(events) > 1, limits=state.write_limits,
                               pseudonyms=state.pseudonyms)
    except RowErrors as exc:
        raise ValueError("; ".join(str(e.get("msg")) for e in exc.errors[:3])) from None
    service.invalidate_users(written.user_ids)
    if request_id is not None and written.inserted == len(events) and shop.request is not None:
        attribute_events(shop.request, events)  # stored now (not a re-post): the live counters move
    if kind == "search" and written.inserted and state.search is not None:
        state.search.record_queries([query])  # autocomplete counts it, as for the API
    state.metrics.events.labels("inserted").inc(written.inserted)
    state.metrics.events.labels("duplicate").inc(written.duplicates)
    who = f"customer {customer}" if customer is not None else "this guest"
    return Recorded(written.inserted, f"Stored {written.inserted} {kind} event{'s' if written.inserted != 1 else ''} for {who}.")


_CONTEXT: dict[str, Any] = {"source": "storefront"}
