"""The visitor's own state, kept in their browser's cookies (nothing on the server, so
any worker or replica serves them): which customer they browse as, the items they
touched (a guest's recommendations come from these), their cart and a visitor id (the
``user_id`` of a guest's events and the ``session_id`` of every event they post).

Cookies are HttpOnly and SameSite=Strict (see :mod:`.access`). They hold nothing
secret: a visitor who edits them changes only their own view; picking a customer is
checked against the key's scopes on every request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from fastapi import Request, Response

from .access import set_cookie

CUSTOMER, TRAIL, CART, VISITOR = "sf_customer", "sf_trail", "sf_cart", "sf_visitor"
MAX_TRAIL = 20
MAX_CART = 30
MAX_COOKIE = 3000  # characters per cookie (browsers keep 4096 bytes)
MAX_ID = 256
#: between ids (each percent-encoded, so it never occurs inside one); a cookie-safe character
SEP = "|"


def _ids(raw: str | None) -> list[str]:
    out = []
    for part in (raw or "").split(SEP):
        value = unquote(part)
        if value and len(value) <= MAX_ID:
            out.append(value)
    return out


def _text(values: list[str]) -> str:
    parts = [quote(v, safe="") for v in values]
    while parts and len(SEP.join(parts)) > MAX_COOKIE:  # the oldest go first
        parts.pop(0)
    return SEP.join(parts)


@dataclass
class Visitor:
    customer: str | None = None
    trail: list[str] = field(default_factory=list)  # items touched, oldest first
    cart: dict[str, int] = field(default_factory=dict)  # item id -> quantity, in the order added
    visitor_id: str | None = None
    changed: set[str] = field(default_factory=set)  # cookies to write back

    @classmethod
    def of(cls, request: Request) -> Visitor:
        c = request.cookies
        cart: dict[str, int] = {}
        for entry in _ids(c.get(CART)):
            item, _, qty = entry.rpartition("*")
            if item and qty.isdigit() and 0 < int(qty) < 1000:
                cart[item] = int(qty)
        customer = (c.get(CUSTOMER) or "").strip() or None
        visitor = c.get(VISITOR)
        if not visitor or len(visitor) > 64 or not visitor.replace("-", "").isalnum():
            visitor = None
        return cls(customer if customer and len(customer) <= MAX_ID else None, _ids(c.get(TRAIL))[-MAX_TRAIL:],
                   cart, visitor)

    # -- changes --------------------------------------------------------------------------
    def touch(self, item_id: str) -> None:
        """``item_id`` joins the trail as its newest item."""
        self.trail = [i for i in self.trail if i != item_id][-(MAX_TRAIL - 1):] + [item_id]
        self.changed.add(TRAIL)

    def add(self, item_id: str, qty: int = 1) -> None:
        if item_id not in self.cart and len(self.cart) >= MAX_CART:
            raise ValueError(f"the cart holds at most {MAX_CART} products")
        self.cart[item_id] = min(999, self.cart.get(item_id, 0) + qty)
        self.changed.add(CART)

    def remove(self, item_id: str) -> None:
        self.cart.pop(item_id, None)
        self.changed.add(CART)

    def empty_cart(self) -> None:
        self.cart = {}
        self.changed.add(CART)

    def pick(self, customer: str | None) -> None:
        """Browse as ``customer`` (None: as a guest); the trail starts afresh."""
        self.customer = customer
        self.trail = []
        self.changed.update((CUSTOMER, TRAIL))

    def ensure_id(self) -> str:
        if self.visitor_id is None:
            self.visitor_id = "guest-" + secrets.token_hex(8)
            self.changed.add(VISITOR)
        return self.visitor_id

    @property
    def cart_count(self) -> int:
        return sum(self.cart.values())

    def save(self, request: Request, response: Response) -> None:
        """Write the changed cookies onto ``response``."""
        values = {
            CUSTOMER: self.customer or "",
            TRAIL: _text(self.trail),
            CART: _text([f"{item}*{qty}" for item, qty in self.cart.items()]),
            VISITOR: self.visitor_id or "",
        }
        for name in sorted(self.changed):
            set_cookie(request, response, name, values[name], max_age=30 * 86400)
