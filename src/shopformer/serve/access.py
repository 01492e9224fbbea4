"""Who is calling, what they may do, and how often: API keys with scopes, per-key rate
limits (429 with ``Retry-After``) and the audit trail of admin actions.

``KeyRing``
    The keys this process accepts: the store's active keys (:mod:`shopformer.store.access`,
    made with ``shopformer keys create`` or ``POST /v1/admin/keys``) and the legacy
    ``SHOPFORMER_API_KEY``, which holds every scope. A key made by another process is
    found on first use (an unknown key id reloads the ring, at most once a second);
    a revocation reaches this process at once when it revoked, else within
    ``SHOPFORMER_SYNC_S`` seconds (the sync tick reloads the ring when the store's keys
    version moved).
``AccessControl``
    A pure ASGI middleware (it is on every request's path): it resolves the
    ``X-API-Key`` header to a :class:`Principal` once, for the routes' scope checks, and
    counts the request against the key's rate limit (its own, else
    ``SHOPFORMER_RATE_LIMIT``), or the client address's (``SHOPFORMER_ANON_RATE_LIMIT``)
    for requests without a valid key. Counting uses the ``limits`` package (sliding
    window counters) in memory, per process, or shared by every process and replica
    through Redis (``SHOPFORMER_RATE_LIMIT_STORAGE=redis://...``).
``authorize``
    The scope check the routes call. With no key configured at all (no
    ``SHOPFORMER_API_KEY``, no stored key) reads are open and writes and admin actions
    need ``SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES=1`` (a local demo); once any key
    exists, customers' data needs a ``read`` key, writes a ``write`` key, admin actions an
    ``admin`` key (which holds the other two).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from starlette.types import ASGIApp, Receive, Scope, Send

from shopformer.store import EventStore
from shopformer.store.access import ADMIN, READ, SCOPES, WRITE, active_key_hashes, hash_key, key_id_of, keys_version
from shopformer.store.access import record_audit as store_audit

log = logging.getLogger("shopformer.serve")

#: never rate limited: liveness probes and the Prometheus scrape
UNLIMITED_PATHS = ("/health", "/metrics")


@dataclass(frozen=True)
class Principal:
    """The caller as the routes see it."""

    actor: str  # "key:<key_id> (<name>)", "env-key" or "open"
    key_id: str | None
    scopes: frozenset[str]
    rate_limit: str | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


ENV_KEY = Principal("env-key", None, frozenset(SCOPES))
OPEN = Principal("open", None, frozenset(SCOPES))
#: marker: an X-API-Key was sent and matched no active key
INVALID = Principal("invalid", None, frozenset())


class KeyRing:
    """The keys this process accepts (see the module docstring). Thread-safe."""

    def __init__(self, env_key: str | None) -> None:
        self._env_key = env_key.encode("utf-8") if env_key else None
        self._store: EventStore | None = None
        self._keys: dict[str, tuple[str, Principal]] = {}
        self._version: str | None = None
        self._last_miss = 0.0
        self._lock = threading.Lock()

    def attach(self, store: EventStore) -> None:
        self._store = store
        self.refresh(force=True)

    @property
    def configured(self) -> bool:
        """Any key at all: from then on customers' data needs a read key."""
        return self._env_key is not None or bool(self._keys)

    def refresh(self, force: bool = False) -> bool:
        """Reload the stored keys if they changed (or ``force``); True if reloaded."""
        if self._store is None:
            return False
        version = keys_version(self._store)
        if not force and version == self._version:
            return False
        rows = active_key_hashes(self._store)
        keys = {kid: (digest, Principal(f"key:{kid} ({k.name})", kid, frozenset(k.scopes), k.rate_limit))
                for kid, (digest, k) in rows.items()}
        with self._lock:
            self._keys, self._version = keys, version
        return True

    def authenticate(self, key: str) -> Principal:
        """The principal a presented key stands for, or :data:`INVALID`."""
        kid = key_id_of(key)
        if kid is not None:
            found = self._keys.get(kid)
            if found is None and self._store is not None:
                now = time.monotonic()
                if now - self._last_miss > 1.0:  # made by another process? look once a second at most
                    self._last_miss = now
                    self.refresh(force=True)
                    found = self._keys.get(kid)
            if found is not None and hmac.compare_digest(found[0], hash_key(key)):
                return found[1]
        if self._env_key is not None and hmac.compare_digest(key.encode("utf-8"), self._env_key):
            return ENV_KEY
        return INVALID


class RateLimits:
    """Per-key and per-address request budgets on the ``limits`` package."""

    def __init__(self, default: str | None, anonymous: str | None, storage_uri: str = "memory://") -> None:
        from limits import parse_many
        from limits.storage import storage_from_string
        from limits.strategies import SlidingWindowCounterRateLimiter

        self._parse = parse_many
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))
        self._default = tuple(parse_many(default)) if default else ()
        self._anonymous = tuple(parse_many(anonymous)) if anonymous else ()
        self._parsed: dict[str, tuple] = {}

    def _items(self, principal: Principal | None) -> tuple:
        if principal is None or principal is INVALID:
            return self._anonymous
        if principal.rate_limit:
            items = self._parsed.get(principal.rate_limit)
            if items is None:
                items = self._parsed[principal.rate_limit] = tuple(self._parse(principal.rate_limit))
            return items
        return self._default

    def check(self, principal: Principal | None, client: str) -> tuple[bool, int, str]:
        """(allowed, seconds until a retry can pass, the limit's text). Every limit of
        the caller is counted; the first one exhausted refuses."""
        if principal is None or principal is INVALID:
            identity = f"addr:{client}"
        else:
            identity = principal.key_id or principal.actor
        for item in self._items(principal):
            if not self._limiter.hit(item, "shopformer", identity):
                reset = self._limiter.get_window_stats(item, "shopformer", identity).reset_time
                return False, max(1, math.ceil(reset - time.time())), str(item)
        return True, 0, ""


class AccessControl:
    """Resolve the caller once per request and apply the rate limits (pure ASGI)."""

    def __init__(self, app: ASGIApp, keyring: KeyRing, limits: RateLimits | None) -> None:
        self.app = app
        self.keyring = keyring
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                if value:
                    principal = self.keyring.authenticate(value.decode("latin-1"))
                break
        scope.setdefault("state", {})["principal"] = principal
        if self.limits is not None and scope["path"] not in UNLIMITED_PATHS:
            client = (scope.get("client") or ("unknown", 0))[0]
            ok, retry, limit = self.limits.check(principal, client)
            if not ok:
                who = "this key" if principal not in (None, INVALID) else "this address"
                body = json.dumps({"detail": f"rate limit exceeded for {who} ({limit}); retry after {retry} s"}).encode()
                await send({"type": "http.response.start", "status": 429, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _principal(request: Request) -> Principal | None:
    state = request.scope.get("state") or {}
    if "principal" in state:
        return state["principal"]
    key = request.headers.get("x-api-key")  # no middleware (an app built without it)
    return request.app.state.keyring.authenticate(key) if key else None


def authorize(request: Request, scope: str) -> Principal:
    """Raise 401/403/503 unless the caller may act with ``scope``; return who they are."""
    keyring: KeyRing = request.app.state.keyring
    principal = _principal(request)
    if not keyring.configured:
        if scope == READ or request.app.state.settings.allow_unauthenticated_writes:
            return OPEN
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "writes are disabled: this server has no API key; set SHOPFORMER_API_KEY or make one with "
            "`shopformer keys create` (or SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES=1 for a local demo)",
        )
    if principal is None:
        what = {READ: "customers' data needs", WRITE: "writes need", ADMIN: "admin actions need"}[scope]
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            f"missing API key: {what} a key with the '{scope}' scope in the X-API-Key header",
                            headers={"WWW-Authenticate": "ApiKey"})
    if principal is INVALID:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
    if not principal.allows(scope):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this key ({principal.key_id}) lacks the '{scope}' scope "
                            f"(it has: {', '.join(sorted(principal.scopes))})")
    return principal


def audit(request: Request, principal: Principal, action: str, target: str | None = None, outcome: str = "ok",
          detail: dict | None = None) -> None:
    """Append an admin action to the store's audit log. A failure to record is logged
    and does not undo the action (it has happened; refusing the answer would hide it)."""
    client = request.client.host if request.client else None
    try:
        store_audit(request.app.state.service.store, principal.actor, action, target, outcome, detail, client)
    except Exception:  # noqa: BLE001
        log.exception("could not record %s on %s in the audit log", action, target)
