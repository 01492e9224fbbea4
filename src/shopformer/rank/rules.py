"""The business-rule step: between retrieval (or search) and the answer, in one place
for recommendations, similar items and search.

It takes the ranked candidates (ids and scores, best first; retrieval fetches
:meth:`RuleSet.fetch` of them, more than ``k``, so that excluded and buried items
leave enough to fill ``k``) and the stored rules (:mod:`shopformer.store.rules`), and
returns the answer's order with a :class:`Move` per rule that touched each item.

Which rules apply: those whose window ``[starts_at, ends_at)`` holds the request's time,
whose audience holds the customer (``known``: a non-empty history; ``new``: none;
a list of user ids: only those users; anonymous requests are never in a list) and,
for a query-targeted rule, whose phrases the search query holds (never in
recommendations).

Conflicts resolve in this order:

1. ``exclude`` wins over everything: an excluded item is never shown, even when a rule
   pins or boosts it.
2. ``boost`` / ``bury`` re-order the rest: each candidate's score is min-max normalized
   over the candidates to [0, 1], every matching boost adds its ``weight`` and every
   bury subtracts its own (weights add up; ties keep the model's order). So weight 1
   lifts a boosted item above every unboosted one, 0.1 past items within a tenth of
   the score range.
3. ``pin`` places its item at its position, over the boosted order: pins by priority
   (highest first) then creation order (lowest ``rule_id``); a position already taken
   by an earlier pin goes to the next free one; an item pinned twice keeps its first
   pin; a position past ``k`` does nothing. In recommendations a pinned item the
   model did not propose is inserted (unless the request's own filters or history
   exclusion leave it out, see ``insertable``); in search only items that match the
   query are pinned (a pin does not make an unrelated product match).

Each :class:`Move` says which rule did what to which item, from its rank among the
candidates (the model's order, after the request's filters; None for an inserted pin)
to its rank in the answer (None when it is not shown). Items that a rule touched are
reported when they are shown or were in the model's top ``k``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime

import numpy as np

from shopformer.store.rules import Rule, query_words

EFFECTS = {"boost": "boosted", "bury": "buried", "pin": "pinned", "exclude": "excluded"}


@dataclass(frozen=True)
class RulesConfig:
    """How many candidates to fetch when rules apply: ``factor * k + extra`` (so up to
    that many minus ``k`` items can be excluded or buried and ``k`` still filled)."""

    factor: int = 3
    extra: int = 20


@dataclass(frozen=True)
class ItemFacts:
    """What attribute rules match on, from the catalog."""

    categories: tuple[str, ...] = ()
    brand: str | None = None
    tags: tuple[str, ...] = ()
    available: bool | None = None

    @cached_property
    def keys(self) -> frozenset[tuple[str, ...]]:
        """What attribute rules look for (:func:`_rule_key`); made once per product
        while the facts are cached, not once per request."""
        return _facts_keys(self)


@dataclass(frozen=True)
class Audience:
    """Who the answer is for: ``user_id`` (None: anonymous) and whether they have a
    history (a callable: only asked when a rule's audience needs it)."""

    user_id: str | None = None
    has_history: Callable[[], bool] | bool = False

    def holds(self, audience: str | tuple[str, ...]) -> bool:
        if audience == "all":
            return True
        if isinstance(audience, tuple):
            return self.user_id is not None and self.user_id in audience
        known = self.has_history() if callable(self.has_history) else self.has_history
        return known if audience == "known" else not known


@dataclass(frozen=True)
class Move:
    rule_id: int
    item_id: str
    effect: str  # boosted | buried | pinned | excluded
    from_rank: int | None  # among the candidates; None: inserted by a pin
    to_rank: int | None  # in the answer; None: not shown

    def to_dict(self) -> dict:
        return {"rule_id": self.rule_id, "item_id": self.item_id, "effect": self.effect, "from_rank": self.from_rank,
                "to_rank": self.to_rank}


@dataclass
class Reranked:
    item_ids: list[str]
    scores: list[float]
    moves: list[Move] = field(default_factory=list)
    inserted: set[str] = field(default_factory=set)  # pinned items that were not candidates


def _rule_key(rule: Rule) -> tuple[str, ...] | None:
    """What an attribute rule looks for in an item's :func:`_item_keys` (None: an item list)."""
    key, value = next(iter(rule.match.items()))
    if key == "items":
        return None
    return (key,) if key == "unavailable" else (key, value.casefold())


def _item_keys(f: ItemFacts | None) -> frozenset[tuple[str, ...]]:
    return frozenset() if f is None else f.keys


def _facts_keys(f: ItemFacts) -> frozenset[tuple[str, ...]]:
    keys = {("category", c.casefold()) for c in f.categories} | {("tag", t.casefold()) for t in f.tags}
    if f.brand is not None:
        keys.add(("brand", f.brand.casefold()))
    if f.available is False:
        keys.add(("unavailable",))
    return frozenset(keys)


class RuleIndex:
    """The active rules of a request by what they match: item id -> rules and
    attribute key -> rules, each list in the active (``rule_id``) order. Built once
    per active set (the :class:`RuleSet` keeps it), so matching a candidate is a few
    dict lookups, not a scan of every rule: 100 rules cost about what 10 do."""

    def __init__(self, active: Sequence[Rule]) -> None:
        self.order = {r.rule_id: n for n, r in enumerate(active)}
        self.by_item: dict[str, list[Rule]] = {}
        self.by_key: dict[tuple[str, ...], list[Rule]] = {}
        for r in active:
            key = _rule_key(r)
            if key is None:
                for item_id in r.match["items"]:
                    self.by_item.setdefault(item_id, []).append(r)
            else:
                self.by_key.setdefault(key, []).append(r)
        self.needs_facts = bool(self.by_key)
        self.pinned = [r.match["items"][0] for r in active if r.kind == "pin"]


class _Matcher:
    """Which rules match which items, for one request (memoized per item)."""

    def __init__(self, index: RuleIndex, facts: Mapping[str, ItemFacts]) -> None:
        self.index, self.facts = index, facts
        self._found: dict[str, list[Rule]] = {}

    def __call__(self, item_id: str) -> list[Rule]:
        """The rules matching ``item_id``, in the active order."""
        found = self._found.get(item_id)
        if found is None:
            found = self.index.by_item.get(item_id, [])
            if self.index.by_key:
                extra = [r for key in _item_keys(self.facts.get(item_id)) for r in self.index.by_key.get(key, ())]
                if extra:
                    found = sorted(found + extra, key=lambda r: self.index.order[r.rule_id])
            self._found[item_id] = found
        return found


class RuleSet:
    """The stored rules, as one process applies them (immutable; swapped whole)."""

    def __init__(self, config: RulesConfig, rules: Sequence[Rule], version: str = "") -> None:
        self.config = config
        self.rules = tuple(sorted(rules, key=lambda r: r.rule_id))
        self.version = version
        self._indexes: dict[tuple[int, ...], RuleIndex] = {}  # by active rule ids; few distinct sets

    def index(self, active: Sequence[Rule]) -> RuleIndex:
        """The :class:`RuleIndex` of ``active`` (kept: the active set changes only
        with windows and audiences)."""
        key = tuple(r.rule_id for r in active)
        found = self._indexes.get(key)
        if found is None:
            if len(self._indexes) >= 256:  # e.g. many per-user audiences: keep the memory bounded
                self._indexes.clear()
            found = self._indexes[key] = RuleIndex(active)
        return found

    def active(self, now: datetime, audience: Audience, query: str | None = None) -> list[Rule]:
        """The rules that apply to a request at ``now`` for ``audience`` (``query``: the
        search query; None for recommendations)."""
        words = None if query is None else query_words(query)
        return [r for r in self.rules if r.active(now) and audience.holds(r.audience) and r.applies_to(words)]

    def fetch(self, k: int, n_max: int | None = None) -> int:
        n = self.config.factor * k + self.config.extra
        return n if n_max is None else max(k, min(n, n_max))

    @staticmethod
    def apply(active: Sequence[Rule], item_ids: Sequence[str], scores: Sequence[float], k: int,
              facts: Mapping[str, ItemFacts] | None = None,
              insertable: Callable[[str], bool] | None = None, index: RuleIndex | None = None) -> Reranked:
        """The answer (at most ``k`` items) from the candidates ``item_ids`` (best
        first) under ``active`` rules, in the order the module docstring documents.
        ``insertable(item_id)``: whether a pinned item that is not a candidate may be
        inserted (None: never). ``index``: ``active``'s :class:`RuleIndex` when the
        caller keeps one (:meth:`index`)."""
        facts = facts or {}
        ids = list(item_ids)
        if not active:
            return Reranked(ids[:k], [float(s) for s in scores][:k])
        model_rank = {i: r + 1 for r, i in enumerate(ids)}
        score_of = dict(zip(ids, (float(s) for s in scores)))
        has_shifts = any(r.kind in ("boost", "bury") for r in active)
        pins = sorted((r for r in active if r.kind == "pin"), key=lambda r: (-r.priority, r.rule_id))
        touched: dict[str, list[Rule]] = {}
        matches = _Matcher(index or RuleIndex(active), facts)

        # 1. exclude (candidates and pinned items alike): the first exclude rule that matches
        excluded: dict[str, Rule] = {}
        for i in ids + [p.match["items"][0] for p in pins]:
            if i in excluded:
                continue
            hit = next((r for r in matches(i) if r.kind == "exclude"), None)
            if hit is not None:
                excluded[i] = hit
        kept = [i for i in ids if i not in excluded]

        # 2. boost / bury on min-max normalized scores
        if has_shifts and kept:
            s = np.nan_to_num(np.array([score_of[i] for i in kept], dtype=np.float64), nan=0.0, posinf=0.0,
                              neginf=0.0)
            lo, span = float(s.min()), float(s.max() - s.min())
            adjusted = (s - lo) / span if span > 0 else np.zeros_like(s)
            for n, i in enumerate(kept):
                for r in matches(i):
                    if r.kind in ("boost", "bury"):
                        adjusted[n] += r.weight if r.kind == "boost" else -r.weight
                        touched.setdefault(i, []).append(r)
            order = np.lexsort((np.arange(len(kept)), -adjusted))  # ties keep the model's order
            kept = [kept[n] for n in order]

        # 3. pins over the boosted order
        slots: dict[int, str] = {}
        inserted: set[str] = set()
        for r in pins:
            item = r.match["items"][0]
            if item in excluded or item in slots.values():
                continue
            if item not in model_rank and (insertable is None or not insertable(item)):
                continue
            slot = r.position - 1
            while slot in slots:
                slot += 1
            if slot >= k:
                continue
            slots[slot] = item
            touched.setdefault(item, []).append(r)
            if item not in model_rank:
                inserted.add(item)
        rest = iter(i for i in kept if i not in slots.values())
        answer: list[str] = []
        for slot in range(k):
            item = slots.get(slot)
            if item is None:
                item = next(rest, None)
                if item is None:  # a short answer: the later pins close up behind it
                    answer.extend(slots[s] for s in sorted(slots) if s > slot)
                    break
            answer.append(item)

        final_rank = {i: r + 1 for r, i in enumerate(answer)}
        fill = [score_of[i] for i in kept]
        out_scores = [score_of.get(i, fill[min(r, len(fill) - 1)] if fill else 0.0) for r, i in enumerate(answer)]
        moves = [Move(r.rule_id, i, "excluded", model_rank.get(i), None) for i, r in excluded.items()
                 if model_rank.get(i, k + 1) <= k or any(p.match["items"][0] == i for p in pins)]
        for i, applied in touched.items():
            if i in final_rank or model_rank.get(i, k + 1) <= k:
                moves.extend(Move(r.rule_id, i, EFFECTS[r.kind], model_rank.get(i), final_rank.get(i)) for r in applied)
        moves.sort(key=lambda m: (m.to_rank is None, m.to_rank or 0, m.from_rank or 0, m.rule_id))
        return Reranked(answer, out_scores, moves, inserted)
