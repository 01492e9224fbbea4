"""The storefront at ``/``: thin routes over :mod:`.shop` (answers), :mod:`.events`
(what the visitor does), :mod:`.visitor` (their cookies) and :mod:`.access` (what they
may do; CSRF).

Pages (GET, HTML): ``/`` home, ``/p/{item_id}`` product, ``/search`` results with
facets, ``/cart``, ``/login``. The page's small endpoints live under ``/shop/``:
``POST /shop/events`` (an event; JSON from the page's script, or a plain form post
without script), ``GET /shop/recs`` (the recommendation panel), ``GET /shop/suggest``
(autocomplete), ``POST /shop/customer`` (browse as a customer), ``POST /login`` and
``POST /logout``. Every POST must come from the storefront's own pages (see
:func:`.access.same_origin`).
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
import re
import time
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shopformer.search import SearchFilter
from shopformer.serve.schemas import REQUEST_ID_PATTERN

from .access import KEY_COOKIE, Access, access_of, check_key, clear_cookie, safe_next, same_origin, set_cookie
from .cards import attributes, card_of, cards
from .events import record
from .shop import Shop
from .templating import fragment, page
from .visitor import TRAIL, Visitor

log = logging.getLogger("shopformer.web")
router = APIRouter(include_in_schema=False)
Id = Annotated[str, Path(min_length=1, max_length=256)]
MAX_BODY = 16 * 1024
WARM_UP = "shopformer_warm_up"  # scope key of the warm-up's stand-in requests
REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
#: events a page posts about one product it showed: attributed to the answer that showed it
ATTRIBUTABLE = ("view", "click", "add_to_cart")


def _context(request: Request, **more: Any) -> tuple[Shop, Access, Visitor, dict[str, Any]]:
    access, visitor = access_of(request), Visitor.of(request)
    # every panel a page shows is an answer logged as an impression, except the warm-up's
    shop = Shop(request.app.state, None if request.scope.get(WARM_UP) else request, (access, visitor))
    if visitor.customer and not access.read:
        visitor.customer = None  # a customer picked with a key that is gone: a guest now
    ctx = {"access": access, "visitor": visitor, "customer": shop.browsing_as(access, visitor),
           "customers": shop.known_customers() if access.read else [], "cart_count": visitor.cart_count,
           "q": "", **more}
    return shop, access, visitor, ctx


def _finish(request: Request, response: Response, visitor: Visitor, started: float) -> Response:
    visitor.save(request, response)
    response.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - started):.1f}"
    return response


# -- pages -------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    started = time.perf_counter()
    shop, access, visitor, ctx = _context(request)
    ctx["recs"] = shop.recommendations(access, visitor)
    return _finish(request, page(request, "storefront/home.html", ctx), visitor, started)


@router.get("/p/{item_id}", response_class=HTMLResponse)
def product(request: Request, item_id: Id, via: Annotated[str | None, Query(max_length=32)] = None,
            rid: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """``rid``: the answer (its request id) whose link was followed; the page's click and
    add-to-cart events carry it, so they are attributed to that answer."""
    started = time.perf_counter()
    shop, access, visitor, ctx = _context(request, came_from=_request_id(rid))
    row = shop.service.store.get_product(item_id)
    served = shop.service.served
    if row is None and (served is None or item_id not in served.run.items):
        ctx["message"] = f"There is no product {item_id!r} in this shop."
        return _finish(request, page(request, "storefront/message.html", ctx, status_code=404), visitor, started)
    ctx.update(item=card_of(item_id, row), row=row or {}, attributes=attributes(row or {}),
               event="click" if via else "view", recs=shop.recommendations(access, visitor),
               similar=shop.similar(item_id), together=shop.together(item_id))
    return _finish(request, page(request, "storefront/product.html", ctx), visitor, started)


@router.get("/search", response_class=HTMLResponse)
def search(
    request: Request,
    q: Annotated[str, Query(max_length=512)] = "",
    category: Annotated[list[str] | None, Query(max_length=20)] = None,
    brand: Annotated[list[str] | None, Query(max_length=20)] = None,
    min_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    max_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    available_only: bool = False,
) -> Response:
    started = time.perf_counter()
    shop, access, visitor, ctx = _context(request, q=q.strip())
    flt = SearchFilter(categories=tuple(category or ()), brands=tuple(brand or ()), min_price=min_price,
                       max_price=max_price if max_price is None or min_price is None or max_price >= min_price else None,
                       available_only=available_only)
    found = shop.search(q.strip(), flt, ctx["customer"]) if q.strip() else None
    ctx.update(found=found, flt=flt, recs=shop.recommendations(access, visitor), facet_url=_facet_url(request))
    return _finish(request, page(request, "storefront/search.html", ctx), visitor, started)


@router.get("/cart", response_class=HTMLResponse)
def cart(request: Request) -> Response:
    started = time.perf_counter()
    shop, access, visitor, ctx = _context(request)
    lines = cards(shop.service.store, list(visitor.cart))
    for line in lines:
        line.note = str(visitor.cart[line.item_id])
    total = sum(c.price * visitor.cart[c.item_id] for c in lines if c.price is not None)
    ctx.update(lines=lines, total=total, recs=shop.recommendations(access, visitor))
    return _finish(request, page(request, "storefront/cart.html", ctx), visitor, started)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str | None, Query(max_length=512)] = None) -> Response:  # noqa: A002
    started = time.perf_counter()
    _, _, visitor, ctx = _context(request, next=safe_next(next), error=None)
    return _finish(request, page(request, "storefront/login.html", ctx), visitor, started)


# -- actions (POST: same origin only) ----------------------------------------------------
@router.post("/login")
async def login(request: Request) -> Response:
    same_origin(request)
    form = await _form(request)
    key, target = form.get("key", "").strip(), safe_next(form.get("next"))
    principal = check_key(request, key)
    if principal is None:
        _, _, visitor, ctx = _context(request, next=target, error="That key is not valid (or has been revoked).")
        return page(request, "storefront/login.html", ctx, status_code=401)
    response = RedirectResponse(target, status_code=303)
    set_cookie(request, response, KEY_COOKIE, key)  # HttpOnly, SameSite=Strict; re-checked on every request
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    same_origin(request)
    response = RedirectResponse("/", status_code=303)
    clear_cookie(request, response, KEY_COOKIE)
    visitor = Visitor.of(request)
    visitor.pick(None)
    visitor.save(request, response)
    return response


@router.post("/shop/customer")
async def pick_customer(request: Request) -> Response:
    """Browse as a customer (their recommendations and history: the ``read`` scope) or,
    with an empty id, as a guest."""
    same_origin(request)
    form = await _form(request)
    customer = form.get("customer", "").strip()[:256] or None
    access = access_of(request)
    if customer is not None and not access.read:
        raise HTTPException(403, "browsing as a customer needs a key with the 'read' scope: sign in at /login")
    if customer is not None:
        try:
            Shop(request.app.state).user_id(customer)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    visitor = Visitor.of(request)
    visitor.pick(customer)
    response = RedirectResponse(_back(request, form), status_code=303)
    visitor.save(request, response)
    return response


@router.post("/shop/events")
async def post_event(request: Request) -> Response:
    """One visitor action. JSON ``{"type", "item_id" | "query"}`` answers JSON with the
    refreshed recommendation panel; a form post redirects back to the page."""
    same_origin(request)
    started = time.perf_counter()
    is_json = request.headers.get("content-type", "").startswith("application/json")
    body = await (_json(request) if is_json else _form(request))
    kind, item, query = str(body.get("type", "")), body.get("item_id") or None, body.get("query") or None
    came_from = _request_id(body.get("request_id"))
    if kind == "search" and (not isinstance(query, str) or not query.strip()):
        raise HTTPException(422, "a search event needs a query")
    if kind not in ("search", "purchase") and not isinstance(item, str):
        raise HTTPException(422, "this event needs an item_id")
    answer, visitor = await run_in_threadpool(_act, request, kind, item, query, came_from)
    response = JSONResponse(answer) if is_json else RedirectResponse(_back(request, body), status_code=303)
    return _finish(request, response, visitor, started)


def _act(request: Request, kind: str, item: str | None, query: str | None,
         came_from: str | None = None) -> tuple[dict[str, Any], Visitor]:
    """Record the action, change the cart, and render the recommendations it leads to."""
    shop, access, visitor, ctx = _context(request)
    before = request.headers.get("x-shown-items", "")
    items = [item] if item else []
    if kind == "purchase" and not items:
        items = list(visitor.cart)
        if not items:
            raise HTTPException(422, "the cart is empty")
    try:
        if kind == "add_to_cart":
            visitor.add(item)
        done = record(shop, access, visitor, kind, items, query.strip()[:512] if query else None,
                      came_from if kind in ATTRIBUTABLE else None)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if kind == "remove_from_cart":
        visitor.remove(item)
    elif kind == "purchase":
        for bought in items:
            visitor.remove(bought)
    recs = shop.recommendations(access, visitor)
    shown = [i for i in before.split(",") if i]
    for card in recs.items:
        card.new = bool(shown) and card.item_id not in shown
    ids = [c.item_id for c in recs.items]
    ctx.update(recs=recs, cart_count=visitor.cart_count)
    return {"stored": done.stored, "message": done.message, "cart_count": visitor.cart_count,
            "recs_html": fragment(request, "storefront/_recs.html", ctx), "items": ids,
            "changed": ids != shown}, visitor


@router.get("/shop/recs", response_class=HTMLResponse)
def recs_panel(request: Request) -> Response:
    started = time.perf_counter()
    shop, access, visitor, ctx = _context(request)
    ctx["recs"] = shop.recommendations(access, visitor)
    response = HTMLResponse(fragment(request, "storefront/_recs.html", ctx), headers={"Cache-Control": "no-store"})
    return _finish(request, response, visitor, started)


@router.get("/shop/suggest")
async def suggest(request: Request, q: Annotated[str, Query(max_length=256)] = "") -> JSONResponse:
    return JSONResponse({"query": q, "suggestions": Shop(request.app.state).suggest(q)},
                        headers={"Cache-Control": "no-store"})


def warm(app: Any) -> None:
    """Render the home, a product and the cart page once and throw them away: the
    templates compile and the caches the first answers need (the explainer, the catalog
    view) are built before the first visitor comes. As a guest who touched one product:
    no customer's history is read and no time-dependent cache (a new visitor's recent
    counts) is filled early. No side effects: these pages store nothing (searching would
    count its query: not warmed)."""
    from urllib.parse import quote

    from starlette.requests import Request as Bare

    served = app.state.service.served
    first = served.run.items.ids[0] if served is not None and len(served.run.items) else None
    cookie = f"{TRAIL}={quote(first, safe='')}".encode() if first else b""

    def request(path: str) -> Request:
        return Bare({WARM_UP: True, "type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "headers": [(b"host", b"warm-up"), (b"cookie", cookie)], "app": app, "scheme": "http",
                     "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 0)})

    try:
        mimetypes.guess_type("storefront.css")  # the static files' first answer reads the MIME table
        home(request("/"))
        if first is not None:
            product(request(f"/p/{quote(first, safe='')}"), first)
        cart(request("/cart"))
    except Exception:  # noqa: BLE001 - only a warm-up: the first visitor pays instead
        log.exception("storefront warm-up failed")


# -- helpers ---------------------------------------------------------------------------
def _request_id(value: Any) -> str | None:
    """A request id as answers make them, else None (a link or form edited by hand loses
    its attribution, not its event)."""
    return value if isinstance(value, str) and REQUEST_ID.fullmatch(value) else None


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(413, "body too large")
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        raise HTTPException(422, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(422, "the body must be a JSON object")
    return value


def _back(request: Request, form: dict[str, Any]) -> str:
    """Where a form post returns: its ``next`` field, else the page it came from."""
    target = form.get("next")
    if not target:
        ref = urlsplit(request.headers.get("referer", ""))
        target = ref.path + (f"?{ref.query}" if ref.query else "") if ref.netloc == request.headers.get("host") else "/"
    return safe_next(str(target))


def _facet_url(request: Request):  # noqa: ANN202 - a template helper
    """``url(name, value)``: the search URL with that facet value toggled."""
    pairs = [(k, v) for k, v in request.query_params.multi_items()]

    def url(name: str, value: Any = None, **replace: Any) -> str:
        from urllib.parse import urlencode

        value = None if value is None else _text(value)
        kept = [(k, v) for k, v in pairs if k not in replace and not (k == name and v == value)]
        toggled_off = len(kept) < len([p for p in pairs if p[0] not in replace])
        if value is not None and not toggled_off:
            kept.append((name, value))
        kept += [(k, _text(v)) for k, v in replace.items() if v is not None]
        return "/search?" + urlencode(kept)

    return url


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)
