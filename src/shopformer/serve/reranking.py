"""Diversity and new-product exposure in recommendation answers: the re-ranking steps
of :mod:`shopformer.rank.diversity` and :mod:`shopformer.rank.exposure` as serving
applies them, between retrieval and the business rules.

Order: retrieval fetches more candidates than ``k``; diversity re-orders them; the
reserved new-item slots are filled; then the business rules apply to that order (so
an ``exclude`` still removes a re-ranked or reserved item: the rules win). Boost and
bury rules shift items by the candidates' min-max normalized scores, so the rules see
the re-ranked order with the candidates' scores re-assigned best-first along it (the
same scale, no item re-sorted back); the answer reports each item's own model score.

- Diversity needs item vectors (the model's output item embeddings, as similar items
  use them): a model without them (the baselines) answers 422 to ``diversity > 0``.
  The category cap reads each candidate's leaf category (the last of its catalog path)
  from the rules' product facts cache.
- New products (the catalog's ``created_at`` within ``new_days`` or tag ``new_tag``) and
  their click-through (impressions in that window, and the ``click`` events attributed
  to them through ``request_id``) are read from the store and kept ``cache_ttl_s``
  seconds (:class:`NewProducts`). The customer's scores of the new items come from one
  full scoring of the history (only when a slot must be filled).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from shopformer.features.sequences import Sequences
from shopformer.rank.diversity import DiversityConfig, Shift, diversify
from shopformer.rank.exposure import ClickThrough, ExposureConfig, is_new, reserve
from shopformer.store import EventStore
from shopformer.store import impressions as stored_impressions


class RerankUnavailable(ValueError):
    """The request asks for a re-ranking the served model cannot do (answered with 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Reranking:
    """One request's re-ranking options."""

    diversity: DiversityConfig = DiversityConfig()
    exposure: ExposureConfig = ExposureConfig()

    @property
    def active(self) -> bool:
        return self.diversity.active or self.exposure.active

    def fetch(self, k: int, n_max: int | None = None) -> int:
        n = max(self.diversity.fetch(k), 2 * k if self.exposure.active else k)
        return n if n_max is None else max(k, min(n, n_max))


class NewProducts:
    """The catalog's new products and their click-through, from the store, cached."""

    def __init__(self, store: EventStore, ttl_s: float) -> None:
        self.store, self.ttl_s = store, ttl_s
        self._cache: dict[tuple, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple, read):  # noqa: ANN001, ANN202
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] <= self.ttl_s:
            return hit[1]
        with self._lock:
            value = read()
            self._cache[key] = (time.monotonic(), value)
            return value

    def forget(self) -> None:
        self._cache = {}

    def ids(self, config: ExposureConfig, now: datetime | None = None) -> list[str]:
        now = now or datetime.now(timezone.utc)

        def read() -> list[str]:
            df = self.store.products(columns=("created_at", "tags"))
            return [i for i, c, t in df.select("item_id", "created_at", "tags").iter_rows() if is_new(config, c, t, now)]

        return self._cached(("ids", config.new_days, config.new_tag), read)

    def click_through(self, config: ExposureConfig, new_ids: list[str]) -> dict[str, ClickThrough]:
        """Impressions of each new item within ``new_days`` and the clicks attributed to them."""

        def read() -> dict[str, ClickThrough]:
            since = datetime.now(timezone.utc) - timedelta(days=config.new_days)
            shown = stored_impressions.read(self.store, since=since).select("request_id", "item_ids")
            shown = shown.explode("item_ids").rename({"item_ids": "item_id"}).filter(pl.col("item_id").is_in(new_ids))
            counts = dict(shown.group_by("item_id").len().iter_rows())
            clicks = stored_impressions.attributable_events(self.store, since).filter(pl.col("event_type") == "click")
            hits = clicks.select("request_id", "item_id").unique().join(shown.unique(), on=["request_id", "item_id"])
            clicked = dict(hits.group_by("item_id").len().iter_rows())
            return {i: ClickThrough(int(n), int(clicked.get(i, 0))) for i, n in counts.items()}

        return self._cached(("ctr", config.new_days, tuple(new_ids)), read)


def _unit_vectors(served, idx: np.ndarray) -> np.ndarray:  # noqa: ANN001 - Served
    unit = served.vectors.unit if served.vectors is not None else None
    if unit is not None:
        return np.asarray(unit[idx], dtype=np.float64)
    table = getattr(served.run.model, "similarity_table", None)
    if table is None:
        raise RerankUnavailable("diversity", f"diversity needs item vectors; the served model {served.name!r} has none "
                                "(use a Transformer run, or max_per_category alone)")
    rows = table()[np.asarray(idx)].detach().float().cpu().numpy().astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def apply(service, options: Reranking, served, ranked, k: int, seq: Sequences, exclude_history: bool,  # noqa: ANN001
          filters, step=None, rng: np.random.Generator | None = None):  # noqa: ANN001, ANN201 - Ranked
    """The answer (``k``) from ``ranked`` (the fetched candidates) re-ranked by
    ``options``, then through the business rules of ``step`` (a RuleStep or None);
    what the re-ranking moved is in ``Ranked.reranked``, what the rules did in ``rules``."""
    ids, scores = list(ranked.item_ids), [float(s) for s in ranked.scores]
    idx = np.asarray(ranked.idx if ranked.idx is not None else served.run.items.encode(ids))
    shifts: list[Shift] = []
    if options.diversity.active and ids:
        vectors = _unit_vectors(served, idx) if options.diversity.diversity > 0 else None
        cats = None
        if options.diversity.max_per_category is not None:
            facts = service.rules.facts(ids)
            cats = [f.categories[-1] if (f := facts.get(i)) is not None and f.categories else None for i in ids]
        out = diversify(options.diversity, ids, scores, k, vectors, cats)
        ids, scores, idx = [ids[p] for p in out.order], [scores[p] for p in out.order], idx[out.order]
        shifts += out.shifts
    real = dict(zip(ids, scores))
    if options.exposure.active and ids:
        new_ids, new_scores = _new_item_scores(service, options.exposure, served, seq, exclude_history, filters)
        ctr = (service.reranker_products.click_through(options.exposure, new_ids)
               if options.exposure.policy == "thompson" and new_ids else None)
        got = reserve(options.exposure, ids, scores, k, new_ids, new_scores, ctr, rng)
        placed = set(got.item_ids)
        real.update(zip(got.item_ids, got.scores))
        ids = got.item_ids + [i for i in ids if i not in placed]
        shifts += got.shifts
    if step is None:
        ids = ids[:k]
        return replace(ranked, item_ids=ids, scores=[round(real[i], 6) for i in ids],
                       idx=np.asarray(served.run.items.encode(ids) if ids else np.zeros(0, dtype=np.int64)),
                       reranked=shifts)
    # the candidates' scores, best first, along the new order (see the module docstring)
    along = sorted(real.values(), reverse=True)[: len(ids)]
    along += along[-1:] * (len(ids) - len(along))
    ranked = replace(ranked, item_ids=ids, scores=along, idx=np.asarray(served.run.items.encode(ids)), reranked=shifts)
    ranked = service._apply_rules(step, served, ranked, k, seq if exclude_history else None, filters)
    # each shown item's own model score (an inserted pin keeps the one the rules gave it)
    return replace(ranked, scores=[round(real.get(i, s), 6) for i, s in zip(ranked.item_ids, ranked.scores)])


def _new_item_scores(service, config: ExposureConfig, served, seq: Sequences, exclude_history: bool,  # noqa: ANN001
                     filters) -> tuple[list[str], list[float]]:  # noqa: ANN001
    """The new items this request may show and the customer's scores of them (-inf:
    not allowed by the filters, or in the excluded history)."""
    items = served.run.items
    new = [i for i in service.reranker_products.ids(config) if i in items]
    if not new:
        return [], []
    idx = items.encode(new)
    row = np.asarray(served.run.model.score(seq), dtype=np.float64)[0]
    s = row[idx]
    allowed = service.allowed(served, filters)
    if allowed is not None:
        s = np.where(allowed[idx], s, -np.inf)
    if exclude_history and seq.n_interactions:
        s = np.where(np.isin(idx, seq.items), -np.inf, s)
    return new, [float(x) for x in s]
