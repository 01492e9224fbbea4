"""The stored business rules as this process applies them (see :mod:`shopformer.rank.rules`).

One :class:`RuleBook` per process, held by the RecommendationService: it keeps the
rules in memory (no store read per request for the rules themselves) and reloads them
when ``serving_state`` ``rules_version`` changed, on the sync tick of ``serve/app.py``
and right after this process changed them, so every worker and replica applies the
same rules within ``SHOPFORMER_SYNC_S``. Attribute rules match on the candidates' brand,
categories, tags and availability, read from the store's catalog and kept for
``SHOPFORMER_CACHE_TTL_S`` (the catalog view's staleness; this process's catalog writes
and the search index's catalog sync drop them at once), so a request reads only the
products it has not seen lately."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from shopformer.rank.rules import Audience, ItemFacts, Reranked, RulesConfig, RuleSet
from shopformer.store import EventStore
from shopformer.store.rules import all_rules, rules_version

log = logging.getLogger("shopformer.serve")
FACT_COLUMNS = ("brand", "categories", "tags", "available")


class RuleBook:
    def __init__(self, config: RulesConfig, store: EventStore, facts_ttl_s: float = 0.0) -> None:
        self.config = config
        self.store = store
        self.facts_ttl_s = facts_ttl_s
        #: (when made, item id -> facts or None for a product the catalog lacks); swapped whole
        self._facts: tuple[float, dict[str, ItemFacts | None]] = (time.monotonic(), {})
        self._lock = threading.Lock()  # one reload at a time; readers take self.rules as is
        self.rules = RuleSet(config, [])
        self._loaded = False

    def sync(self) -> bool:
        """Reload the rules when the store's version differs from the one held (or none
        was loaded yet); True when they changed."""
        version = rules_version(self.store)
        if self._loaded and version == self.rules.version:
            return False
        with self._lock:
            version = rules_version(self.store)
            if self._loaded and version == self.rules.version:
                return False
            self.rules = RuleSet(self.config, all_rules(self.store), version)
            self._loaded = True
        return True

    def forget_facts(self) -> None:
        """The catalog changed: read products' facts again."""
        self._facts = (time.monotonic(), {})

    def facts(self, item_ids: Sequence[str]) -> dict[str, ItemFacts]:
        made, known = self._facts
        if time.monotonic() - made > self.facts_ttl_s:
            made, known = self._facts = (time.monotonic(), {})
        missing = [i for i in dict.fromkeys(item_ids) if i not in known]
        if missing:
            df = self.store.products(missing, columns=FACT_COLUMNS)
            read: dict[str, ItemFacts | None] = dict.fromkeys(missing)
            read.update({row["item_id"]: ItemFacts(tuple(row["categories"] or ()), row["brand"],
                                                   tuple(row["tags"] or ()), row["available"])
                         for row in df.iter_rows(named=True)})
            if self.facts_ttl_s > 0:
                known.update(read)
            else:
                known = read
        return {i: f for i in item_ids if (f := known.get(i)) is not None}

    def step(self, audience: Audience, now: datetime | None = None, query: str | None = None) -> RuleStep | None:
        """The rules that apply to one request (``query``: a search's), or None when
        none does (then nothing changes: retrieval fetches ``k`` as before)."""
        if not self._loaded:
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - answer without rules rather than fail; the sync tick retries
                log.exception("could not load the business rules")
                return None
        rules = self.rules
        if not rules.rules:
            return None
        active = rules.active(now or datetime.now(timezone.utc), audience, query)
        return RuleStep(self, rules, active) if active else None


class RuleStep:
    """The active rules of one request."""

    def __init__(self, book: RuleBook, rules: RuleSet, active: list) -> None:
        self.book, self.rules, self.active = book, rules, active

    def fetch(self, k: int, n_max: int | None = None) -> int:
        return self.rules.fetch(k, n_max)

    def apply(self, item_ids: Sequence[str], scores: Sequence[float], k: int,
              insertable: Callable[[str], bool] | None = None) -> Reranked:
        index = self.rules.index(self.active)
        facts = self.facts([*item_ids, *index.pinned]) if index.needs_facts else None
        return RuleSet.apply(self.active, item_ids, scores, k, facts, insertable, index)

    def facts(self, item_ids: Sequence[str]) -> dict[str, ItemFacts]:
        return self.book.facts(item_ids)
