"""Product cards: what a page shows of a product, read from the store in one query per
list. Product images are not in most shops' event data: a card without an image URL
gets a placeholder (the title's initials on a colour chosen by the product's top
category), one with an ``http(s):``, ``data:image/`` or site-relative URL shows it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from shopformer.store import EventStore

#: placeholder colours (storefront.css ``.ph-0`` .. ``.ph-11``)
HUES = 12
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def initials(title: str | None, item_id: str) -> str:
    words = _WORD.findall(title or "") or _WORD.findall(item_id) or ["?"]
    return "".join(w[0] for w in words[:2]).upper()


def hue(categories: list[str] | None, title: str | None, item_id: str) -> int:
    """The placeholder colour: by top category, so a category looks alike."""
    key = (categories[0] if categories else None) or (title or item_id).split(" ")[0]
    return hashlib.md5(key.strip().lower().encode("utf-8"), usedforsecurity=False).digest()[0] % HUES


def image_url(raw: str | None) -> str | None:
    """A URL safe to put in ``<img src>``, or None."""
    url = (raw or "").strip()
    if url.startswith(("https://", "http://", "data:image/")) or (url.startswith("/") and not url.startswith("//")):
        return url
    return None


@dataclass
class Card:
    item_id: str
    title: str
    price: float | None = None
    currency: str | None = None
    categories: list[str] = field(default_factory=list)
    brand: str | None = None
    image: str | None = None
    available: bool | None = None
    initials: str = "?"
    hue: int = 0
    in_catalog: bool = True
    score: float | None = None
    explanation: Any = None  # a serve.schemas.Explanation (recommendations with explain)
    note: str | None = None  # e.g. "3 customers bought both"
    new: bool = False  # not in the list the page showed before an update

    @property
    def price_text(self) -> str | None:
        if self.price is None:
            return None
        cur = (self.currency or "").upper()
        symbol = {"USD": "$", "EUR": "€", "GBP": "£", "": ""}.get(cur)
        return f"{symbol}{self.price:,.2f}" if symbol is not None else f"{self.price:,.2f} {cur}"


def card_of(item_id: str, row: dict[str, Any] | None, fallback_title: str | None = None) -> Card:
    if row is None:
        title = fallback_title or item_id
        return Card(item_id, title, initials=initials(title, item_id), hue=hue(None, title, item_id), in_catalog=False)
    title = row.get("title") or fallback_title or item_id
    cats = list(row.get("categories") or [])
    return Card(item_id, title, row.get("price"), row.get("currency"), cats, row.get("brand"),
                image_url(row.get("image_uri")), row.get("available"), initials(title, item_id),
                hue(cats, title, item_id))


def cards(store: EventStore, item_ids: list[str], titles: dict[str, str | None] | None = None) -> list[Card]:
    """Cards for ``item_ids`` in that order (one store query)."""
    if not item_ids:
        return []
    rows = {r["item_id"]: r for r in store.products(item_ids).iter_rows(named=True)}
    titles = titles or {}
    return [card_of(i, rows.get(i), titles.get(i)) for i in item_ids]


def attributes(row: dict[str, Any]) -> dict[str, str]:
    """A product's attributes JSON as short display text, values clipped."""
    raw = row.get("attributes")
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k)[:60]: (v if isinstance(v, str) else json.dumps(v))[:120] for k, v in list(value.items())[:20]}
