"""Who is browsing the storefront and what they may do; cookies, CSRF, page headers.

The browser is never handed an API key in page source. The storefront's routes run in
the server with the app's service objects, and decide access as the API would:

* No key configured at all (the local demo): customers' data is open, and events are
  posted when ``SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES=1``.
* Once any key exists, the storefront asks once for one (``/login``). The key is
  checked with the app's :class:`~shopformer.serve.access.KeyRing` and kept in an
  ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over HTTPS), checked again on
  every request, so a revoked key stops working at once. Its scopes decide: ``read``
  lets the visitor pick a customer (their recommendations and history are customers'
  data), ``write`` lets the storefront post events. Without a key a visitor browses as
  a guest: open data only (items, similar items, search, recommendations from the
  items touched in this browser), and no events are stored.
* The API (``/v1/...``) never reads this cookie: it takes keys only from ``X-API-Key``,
  so a cookie can never authorize an API call. Storefront requests carry no
  ``X-API-Key``, so rate limits count them per client address
  (``SHOPFORMER_ANON_RATE_LIMIT``).

CSRF: every state-changing storefront request is a POST, and a POST is accepted only
when its ``Origin`` (else ``Referer``) names this server's own host; one with neither
is refused. Together with ``SameSite=Strict`` (a cross-site request carries no cookie
at all) a page on another site can neither use a visitor's key nor change their cart
or customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response

from shopformer.serve.access import INVALID, KeyRing, Principal
from shopformer.store.access import READ, WRITE

KEY_COOKIE = "sf_key"
#: the page headers: no inline script or style, images from anywhere (catalog URLs)
CSP = ("default-src 'self'; img-src 'self' data: https: http:; script-src 'self'; style-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class Access:
    """What this visitor may do on the storefront."""

    keys_required: bool  # the server has keys: a visitor needs one for customers' data / events
    principal: Principal | None  # the key the cookie holds, when valid
    read: bool  # may pick a customer (their recommendations and history)
    write: bool  # events are posted to the store
    cookie_invalid: bool = False  # the cookie holds a key that is no longer valid

    @property
    def signed_in(self) -> bool:
        return self.principal is not None

    @property
    def label(self) -> str:
        if not self.keys_required:
            return "open demo" if self.write else "open (events not stored: writes are off)"
        if self.principal is None:
            return "guest"
        scopes = ", ".join(sorted(self.principal.scopes))
        return f"signed in ({scopes})"


def access_of(request: Request) -> Access:
    """The visitor's :class:`Access`, from the app's key ring and the key cookie."""
    keyring: KeyRing = request.app.state.keyring
    if not keyring.configured:
        return Access(False, None, True, bool(request.app.state.settings.allow_unauthenticated_writes))
    key = request.cookies.get(KEY_COOKIE)
    principal = keyring.authenticate(key) if key else None
    if principal is INVALID:
        return Access(True, None, False, False, cookie_invalid=True)
    if principal is None:
        return Access(True, None, False, False)
    return Access(True, principal, principal.allows(READ), principal.allows(WRITE))


def check_key(request: Request, key: str) -> Principal | None:
    """The principal ``key`` stands for, or None when it is not an active key."""
    principal = request.app.state.keyring.authenticate(key) if key else INVALID
    return None if principal is INVALID else principal


def from_this_server(request: Request) -> bool:
    """The request came from a page of this server: the host of its ``Origin`` (else of
    its ``Referer``) is the request's ``Host`` (hosts compare case-insensitively). The
    CSRF rule of the storefront and the console."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not source or source == "null" or not host:
        return False
    return urlsplit(source).netloc.lower() == host.lower()


def same_origin(request: Request) -> None:
    """Refuse (403) a POST whose Origin, else Referer, is not this server (CSRF)."""
    if not from_this_server(request):
        raise HTTPException(403, "cross-site request refused: the storefront accepts POSTs from its own pages only")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    """An HttpOnly, SameSite=Strict cookie for the whole site (Secure over HTTPS)."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def safe_next(target: str | None) -> str:
    """A redirect target on this site only (a path), else ``/``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target
