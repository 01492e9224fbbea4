"""API keys with scopes, and the audit log of admin actions, kept in the store.

Keys
    A key is ``sfk_<key_id>_<secret>``: ``key_id`` (12 hex characters) is public and
    names the key in lists, logs and the audit trail; ``secret`` is 256 random bits. The
    store keeps only SHA-256 of the whole key (a fast hash suffices for 256-bit random
    strings: there is nothing to guess), so a copy of the database grants nothing. The
    key is shown once, when it is made. Scopes: ``read`` (customers' data: their
    events, recommendations, personalized search), ``write`` (events, catalog) and
    ``admin`` (reload, erasure, access export, keys, audit log), which includes the other
    two. A key may carry its own rate limit (a ``limits`` string such as ``100/second``
    or ``20/second;1000/minute``), else the server's default applies.
    Every change bumps ``serving_state['api_keys_version']`` in the same transaction, so
    API processes reload their copy of the keys only when it moved.

Audit log
    Append-only rows: when, who (``key:<key_id> (<name>)``, ``env-key``, ``cli``, or
    ``open`` where the server allows unauthenticated writes), the action, its target (a
    run folder, a key id, an erasure receipt: never a raw customer id, only the id's
    SHA-256 as the erasure receipts have it), ``ok``/``failed``, a JSON detail and the
    client address.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from .engine import as_utc
from .schema import api_keys, audit_log

if TYPE_CHECKING:
    from .base import EventStore

READ, WRITE, ADMIN = "read", "write", "admin"
SCOPES = (READ, WRITE, ADMIN)
KEY_PREFIX = "sfk_"
KEYS_VERSION = "api_keys_version"


class AccessError(ValueError):
    """A bad key request (unknown scope, bad rate limit, unknown key id); the message
    names the field."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The ``key_id`` inside a key of this module's form, else None (e.g. the legacy
    ``SHOPFORMER_API_KEY``)."""
    if not key.startswith(KEY_PREFIX):
        return None
    kid, sep, _ = key[len(KEY_PREFIX):].partition("_")
    return kid if sep and kid else None


def check_rate_limit(text: str | None) -> str | None:
    """Normalise and validate a rate limit string (``limits`` syntax); None = none."""
    if text is None or not text.strip():
        return None
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError as exc:
        raise AccessError(f"rate_limit {text!r} is not a rate such as '100/second' or "
                          f"'20/second;1000/minute': {exc}") from None
    return text.strip()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    wanted = sorted({s.strip().lower() for s in scopes if s.strip()})
    if not wanted:
        raise AccessError(f"scopes: give at least one of {', '.join(SCOPES)}")
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise AccessError(f"scopes: unknown {', '.join(map(repr, unknown))}; use {', '.join(SCOPES)}")
    return tuple(wanted)


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_limit: str | None
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "scopes": list(self.scopes),
                "rate_limit": self.rate_limit, "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def _row_key(r: Any) -> ApiKey:
    return ApiKey(key_id=r.key_id, name=r.name, scopes=tuple(r.scopes.split(",")), rate_limit=r.rate_limit,
                  created_at=as_utc(r.created_at), revoked_at=as_utc(r.revoked_at) if r.revoked_at else None)


def _bump_version(store: EventStore, conn: Connection) -> None:
    conn.execute(store._state_upsert(KEYS_VERSION, secrets.token_hex(8)))


def create_key(store: EventStore, name: str, scopes: list[str] | tuple[str, ...],
               rate_limit: str | None = None) -> tuple[ApiKey, str]:
    """Make a key; returns it and the secret key string (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > 128:
        raise AccessError("name: give a name of 1-128 characters (who or what uses the key)")
    scope_t = check_scopes(scopes)
    rate = check_rate_limit(rate_limit)
    key_id = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(key_id, name, scope_t, rate, datetime.now(timezone.utc))

    def work(conn: Connection) -> None:
        conn.execute(api_keys.insert().values(key_id=key_id, name=name, scopes=",".join(scope_t), rate_limit=rate,
                                              key_hash=hash_key(secret), created_at=record.created_at))
        _bump_version(store, conn)

    store._run_write(work)
    return record, secret


def revoke_key(store: EventStore, key_id: str) -> ApiKey:
    """Revoke a key (kept, marked revoked, so the audit trail still names it)."""
    now = datetime.now(timezone.utc)

    def work(conn: Connection) -> Any:
        row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise AccessError(f"key_id: no key {key_id!r}")
        if row.revoked_at is None:
            conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=now))
            _bump_version(store, conn)
        return row

    row = store._run_write(work)
    return replace(_row_key(row), revoked_at=now) if row.revoked_at is None else _row_key(row)


def list_keys(store: EventStore, include_revoked: bool = False) -> list[ApiKey]:
    stmt = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
    if not include_revoked:
        stmt = stmt.where(api_keys.c.revoked_at.is_(None))
    with store._engine.connect() as conn:
        return [_row_key(r) for r in conn.execute(stmt)]


def active_key_hashes(store: EventStore) -> dict[str, tuple[str, ApiKey]]:
    """``key_id -> (SHA-256 of the key, ApiKey)`` of the active keys: what a process
    checks presented keys against."""
    stmt = select(api_keys).where(api_keys.c.revoked_at.is_(None))
    with store._engine.connect() as conn:
        return {r.key_id: (r.key_hash, _row_key(r)) for r in conn.execute(stmt)}


def keys_version(store: EventStore) -> str | None:
    return store.get_state(KEYS_VERSION)


@dataclass(frozen=True)
class AuditEntry:
    entry_id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]
    client: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "target": self.target, "outcome": self.outcome, "detail": self.detail, "client": self.client}


def record_audit(store: EventStore, actor: str, action: str, target: str | None = None, outcome: str = "ok",
                 detail: dict[str, Any] | None = None, client: str | None = None) -> int:
    """Append an admin action to the audit log (durable on return); returns its id."""
    values = dict(at=datetime.now(timezone.utc), actor=actor, action=action, target=target, outcome=outcome,
                  detail=json.dumps(detail or {}, sort_keys=True, default=str), client=client)
    stmt = audit_log.insert().values(**values).returning(audit_log.c.entry_id)
    return int(store._run_write(lambda conn: conn.execute(stmt).scalar_one()))


def audit_entries(store: EventStore, after: int = 0, limit: int = 100, action: str | None = None) -> list[AuditEntry]:
    """Entries with ``entry_id > after``, oldest first (page with the last id seen)."""
    stmt = select(audit_log).where(audit_log.c.entry_id > after).order_by(audit_log.c.entry_id).limit(limit)
    if action:
        stmt = stmt.where(audit_log.c.action == action)
    with store._engine.connect() as conn:
        return [_audit_entry(r) for r in conn.execute(stmt)]


def latest_audit_entries(store: EventStore, limit: int = 10) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first (the operator console's table)."""
    stmt = select(audit_log).order_by(audit_log.c.entry_id.desc()).limit(limit)
    with store._engine.connect() as conn:
        return [_audit_entry(r) for r in conn.execute(stmt)]


def _audit_entry(r: Any) -> AuditEntry:
    return AuditEntry(int(r.entry_id), as_utc(r.at), r.actor, r.action, r.target, r.outcome,
                      json.loads(r.detail or "{}"), r.client)
