"""Business rules kept in the store: what :mod:`shopformer.rank.rules` applies to every
answer, as rows of ``schema.rules``. Added and removed through ``/v1/admin/rules`` and
``shopformer rules``.

A rule is one of

* ``boost`` / ``bury``: items matching ``match`` move up / down by ``weight``;
* ``pin``: the one item of ``match={"items": [id]}`` is shown at ``position`` (1-based);
* ``exclude``: items matching ``match`` are never shown;

where ``match`` is exactly one of ``{"category": c}`` (any level of the category path),
``{"brand": b}``, ``{"tag": t}`` (case-insensitive), ``{"items": [ids]}`` or
``{"unavailable": true}`` (products marked unavailable, i.e. out of stock). Each may
have a UTC window ``[starts_at, ends_at)`` and an ``audience``: ``all``, ``known``
(customers with a history), ``new`` (no history) or a list of user ids. A rule with
``queries`` (phrases) applies only to search answers whose query contains one of them as
whole words, case-insensitively ("drill" matches "cordless drill", not "drills"), and
never to recommendations; without, it applies to every answer.

Adding or removing a rule sets ``serving_state`` ``rules_version`` in the same
transaction: every API process compares it on its sync tick and reloads the rules."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from .engine import as_utc
from .schema import rules

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from .base import EventStore

#: ``serving_state`` name of the rules' version (a new random value on every change)
VERSION = "rules_version"
KINDS = ("boost", "bury", "pin", "exclude")
MATCH_KEYS = ("category", "brand", "tag", "items", "unavailable")
AUDIENCES = ("all", "known", "new")
MAX_ITEMS = 1000  # ids in one item-list rule
MAX_POSITION = 100  # the API's largest k
MAX_QUERIES = 100  # phrases of one query-targeted rule
_WORD = re.compile(r"\w+")


def query_words(text: str) -> tuple[str, ...]:
    """A query or a rule's phrase as the words query-targeted rules compare."""
    return tuple(_WORD.findall(text.casefold()))


class RuleError(ValueError):
    """A refused rule (bad kind, match, weight, window, audience; unknown id)."""


@dataclass(frozen=True)
class Rule:
    rule_id: int
    kind: str  # boost | bury | pin | exclude
    match: dict[str, Any]  # exactly one of MATCH_KEYS
    weight: float = 0.0  # boost / bury: added to / taken from the normalized score
    position: int | None = None  # pin: 1-based
    priority: int = 0  # pin: a higher priority wins a contested position
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    audience: str | tuple[str, ...] = "all"  # all | known | new | user ids
    note: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    queries: tuple[str, ...] = ()  # search only, for queries holding one of these phrases

    def spec(self) -> dict[str, Any]:
        """What ``schema.rules.spec`` holds (the JSON columns of the rule)."""
        audience = list(self.audience) if isinstance(self.audience, tuple) else self.audience
        spec = {"match": self.match, "weight": self.weight, "position": self.position, "priority": self.priority,
                "audience": audience, "note": self.note}
        return {**spec, "queries": list(self.queries)} if self.queries else spec

    def active(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)

    def applies_to(self, query: tuple[str, ...] | None) -> bool:
        """Whether the rule applies to an answer for ``query`` (its :func:`query_words`;
        None: not a search)."""
        if not self.queries:
            return True
        if query is None:
            return False
        return any(_holds(query, query_words(p)) for p in self.queries)

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "kind": self.kind, **self.spec(),
                "starts_at": self.starts_at.isoformat() if self.starts_at else None,
                "ends_at": self.ends_at.isoformat() if self.ends_at else None,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "created_by": self.created_by}


def _holds(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


def check_rule(kind: str, match: dict[str, Any], weight: float = 0.0, position: int | None = None,
               priority: int = 0, starts_at: datetime | None = None, ends_at: datetime | None = None,
               audience: str | list[str] | tuple[str, ...] = "all", note: str | None = None,
               queries: list[str] | tuple[str, ...] | None = None) -> Rule:
    """A checked :class:`Rule` (``rule_id`` 0 until stored); raises :class:`RuleError`
    naming what is wrong."""
    if kind not in KINDS:
        raise RuleError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(match, dict) or len(match) != 1 or next(iter(match)) not in MATCH_KEYS:
        raise RuleError(f"match: give exactly one of {', '.join(MATCH_KEYS)}, e.g. {{\"brand\": \"acme\"}}")
    key, value = next(iter(match.items()))
    if key == "items":
        if not isinstance(value, list) or not value or len(value) > MAX_ITEMS or not all(
                isinstance(i, str) and 0 < len(i) <= 256 for i in value):
            raise RuleError(f"match.items: give 1-{MAX_ITEMS} item ids (strings of 1-256 characters)")
        value = list(dict.fromkeys(value))
    elif key == "unavailable":
        if value is not True:
            raise RuleError("match.unavailable: only true (products marked unavailable)")
    elif not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise RuleError(f"match.{key}: give a non-empty string of at most 256 characters")
    else:
        value = value.strip()
    match = {key: value}
    if kind in ("boost", "bury"):
        if not (0 < float(weight) <= 100):
            raise RuleError("weight: give a number in (0, 100] (1 lifts a matching item above every unmatched one)")
    else:
        weight = 0.0
    if kind == "pin":
        if key != "items" or len(value) != 1:
            raise RuleError('match: a pin names exactly one item, {"items": ["ID"]}')
        if position is None or not (1 <= int(position) <= MAX_POSITION):
            raise RuleError(f"position: give the 1-based position to pin the item at (1-{MAX_POSITION})")
        position = int(position)
    else:
        position = None
    starts_at, ends_at = _utc(starts_at, "starts_at"), _utc(ends_at, "ends_at")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise RuleError("ends_at must be after starts_at")
    if isinstance(audience, str):
        if audience not in AUDIENCES:
            raise RuleError(f"audience: {audience!r} is not one of {', '.join(AUDIENCES)} or a list of user ids")
    else:
        ids = tuple(dict.fromkeys(audience))
        if not ids or len(ids) > MAX_ITEMS or not all(isinstance(u, str) and 0 < len(u) <= 256 for u in ids):
            raise RuleError(f"audience: a list of 1-{MAX_ITEMS} user ids")
        audience = ids
    if note is not None and len(note) > 500:
        raise RuleError("note: at most 500 characters")
    phrases: tuple[str, ...] = ()
    if queries:
        if isinstance(queries, str) or len(queries) > MAX_QUERIES or not all(
                isinstance(q, str) and query_words(q) and len(q) <= 200 for q in queries):
            raise RuleError(f"queries: a list of 1-{MAX_QUERIES} search phrases, each with a word and at most "
                            "200 characters")
        phrases = tuple(dict.fromkeys(" ".join(query_words(q)) for q in queries))
    return Rule(0, kind, match, float(weight), position, int(priority), starts_at, ends_at, audience, note,
                queries=phrases)


def _utc(at: datetime | None, name: str) -> datetime | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise RuleError(f"{name}: give a UTC time with its offset, e.g. 2026-12-01T00:00:00Z")
    try:
        return at.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00
        raise RuleError(f"{name}: out of range") from None


def _bump(store: EventStore, conn: Connection, now: datetime) -> None:
    conn.execute(store._state_upsert(VERSION, secrets.token_hex(8), now))


def _row(r: Any) -> Rule:
    spec = json.loads(r.spec)
    audience = spec.get("audience", "all")
    return Rule(int(r.rule_id), r.kind, spec["match"], float(spec.get("weight") or 0.0), spec.get("position"),
                int(spec.get("priority") or 0), as_utc(r.starts_at) if r.starts_at else None,
                as_utc(r.ends_at) if r.ends_at else None,
                audience if isinstance(audience, str) else tuple(audience), spec.get("note"),
                as_utc(r.created_at), r.created_by, tuple(spec.get("queries") or ()))


def add_rule(store: EventStore, rule: Rule, created_by: str | None = None) -> Rule:
    """Store a rule made by :func:`check_rule` (durable on return); returns it with its id."""
    now = datetime.now(timezone.utc)

    def work(conn: Connection) -> int:
        stmt = rules.insert().values(kind=rule.kind, spec=json.dumps(rule.spec()), starts_at=rule.starts_at,
                                     ends_at=rule.ends_at, created_at=now, created_by=created_by)
        rule_id = conn.execute(stmt.returning(rules.c.rule_id)).scalar_one()
        _bump(store, conn, now)
        return int(rule_id)

    rule_id = store._run_write(work)
    found = get_rule(store, rule_id)
    assert found is not None
    return found


def remove_rule(store: EventStore, rule_id: int) -> Rule:
    """Delete a rule; returns what it was. Every process stops applying it within a sync tick."""
    found = get_rule(store, rule_id)
    if found is None:
        raise RuleError(f"no rule {rule_id}")
    now = datetime.now(timezone.utc)

    def work(conn: Connection) -> None:
        if conn.execute(delete(rules).where(rules.c.rule_id == rule_id)).rowcount == 0:
            raise RuleError(f"no rule {rule_id}")
        _bump(store, conn, now)

    store._run_write(work)
    return found


def get_rule(store: EventStore, rule_id: int) -> Rule | None:
    with store._engine.connect() as conn:
        r = conn.execute(select(rules).where(rules.c.rule_id == rule_id)).first()
    return _row(r) if r is not None else None


def all_rules(store: EventStore) -> list[Rule]:
    """Every stored rule, oldest first (the creation order pins fall back on)."""
    with store._engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(rules).order_by(rules.c.rule_id))]


def rules_version(store: EventStore) -> str:
    """The ``serving_state`` value processes compare on their sync tick ("" = never changed)."""
    return store.get_state(VERSION) or ""
