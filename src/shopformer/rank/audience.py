"""Audience targeting: which customers are most likely to buy an item (or any item of a
category) next. The reverse of a recommendation: one item, ranked customers.

A customer's current state is the sequence model's user vector from their latest events
(``model.user_vectors``: the same vector their recommendations search with), and their
score for item ``i`` is built from the model's own score ``u . e_i`` (``e_i``: row ``i``
of ``model.output_table()``):

- ``score="probability"``: ``log P(i | customer) = u . e_i - log sum_j exp(u . e_j)``,
  the model's softmax over the whole catalog. It makes customers comparable: the raw
  dot product would favour customers whose vectors are long (confident about *some*
  item), not those likely to buy *this* one.
- ``score="logit"`` (default): ``u . e_i`` as recommendations rank items.
- plus ``activity_weight * log(1 + events in the last activity_days)``: a customer who
  buys often has more chances to buy this item within the next N days (with weight 1,
  expected purchases x probability per purchase).
- plus ``repeat_weight * log(1 + times the customer bought the item)`` (each past purchase
  optionally halved every ``repeat_half_life_days``): shops of consumables (and
  wholesalers) sell again to past buyers, beyond the model's window.

The first three terms are one inner product: the customer table row is ``[u, offset_u]``
and the item query ``[e_i, 1]``, so an item's audience is an inner-product search over
customers (:class:`~shopformer.retrieve.exact_index.ExactIndex`, the exact reference);
the repeat term touches only the item's past buyers, so the search fetches ``k`` plus
their number, and their scores are recomputed with it before the merge. A category
scores its items densely (customers x category items) and pools per customer:
``category_pooling="sum"`` is the log of the summed probabilities (the chance that the
next purchase is any of them), ``"max"`` the best single item.

Customers are those with at least one usable event (known item, a type the model
reads); the states are a snapshot of the events they were built from (see
:func:`latest_histories`), so an audience is as fresh as that snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from shopformer.features.sequences import Sequences, build_sequences, order_events
from shopformer.features.vocab import Vocabulary
from shopformer.retrieve.exact import top_k
from shopformer.retrieve.exact_index import ExactIndex
from shopformer.types import EVENT_TYPES

DAY_S = 86_400.0
PURCHASE = EVENT_TYPES.index("purchase")


@dataclass(frozen=True)
class AudienceConfig:
    """How customers are scored for an item. Defaults: the settings chosen on the Online
    Retail validation cut (``benchmarks/audience.py``, results/audience.md; "probability"
    tied "logit" there to 4 decimals), where past purchases of the item weigh most."""

    #: "probability" (log softmax over the catalog) or "logit" (the raw dot product)
    score: Literal["probability", "logit"] = "logit"
    #: weight of log(1 + the customer's events in the last ``activity_days``)
    activity_weight: float = 1.0
    activity_days: float = 90.0
    #: weight of log(1 + the customer's past purchases of the item)
    repeat_weight: float = 8.0
    #: a past purchase counts 0.5 ** (age / this) in the repeat term (None: each counts 1)
    repeat_half_life_days: float | None = None
    #: a category's score per customer: "sum" (log of summed probabilities) or "max"
    category_pooling: Literal["sum", "max"] = "sum"
    #: leave out customers who bought the item in the last N days (0: every past
    #: purchase the history holds; None: keep past buyers)
    exclude_buyers_days: float | None = None
    #: latest events read per customer (as serving reads for recommendations)
    history_limit: int = 200
    #: customers scored at once when building the table or scoring a category
    batch_users: int = 2048

    def __post_init__(self) -> None:
        if self.score not in ("probability", "logit"):
            raise ValueError(f"score must be probability or logit, got {self.score!r}")
        if self.category_pooling not in ("sum", "max"):
            raise ValueError(f"category_pooling must be sum or max, got {self.category_pooling!r}")
        if self.activity_days <= 0 or self.history_limit < 1 or self.batch_users < 1:
            raise ValueError("activity_days must be > 0, history_limit and batch_users >= 1")
        if self.repeat_half_life_days is not None and not self.repeat_half_life_days > 0:
            raise ValueError(f"repeat_half_life_days must be > 0 or None, got {self.repeat_half_life_days}")
        if self.exclude_buyers_days is not None and self.exclude_buyers_days < 0:
            raise ValueError(f"exclude_buyers_days must be >= 0 or None, got {self.exclude_buyers_days}")


@dataclass(frozen=True)
class AudienceList:
    """Customers best first, with their scores (the row indexes are the states' rows)."""

    user_ids: list[str]
    scores: list[float]
    rows: np.ndarray


def latest_histories(events: pl.DataFrame, items: Vocabulary, event_types: tuple[str, ...],
                     dedupe_consecutive: bool = False, limit: int = 200) -> tuple[list[str], Sequences]:
    """Every customer's latest ``limit`` events (any type, as serving reads them), then
    encoded as training encodes them (the model's event types, consecutive repeats
    collapsed, unknown items dropped): (user ids in id order, one row each). Customers
    left with no event are not returned."""
    ev = events.filter(pl.col("user_id").is_not_null())
    n = pl.len().over("user_id").cast(pl.Int64)  # unsigned: n - limit would wrap around
    ev = order_events(ev).filter(pl.int_range(pl.len(), dtype=pl.Int64).over("user_id") >= n - limit)
    ev = ev.filter(pl.col("event_type").is_in(list(event_types)))
    if dedupe_consecutive:
        same = (pl.col("item_id") == pl.col("item_id").shift(1).over("user_id")).fill_null(False)
        ev = ev.filter(~same)
    if ev.height == 0:
        return [], Sequences(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    data = build_sequences(ev, items)
    return data.users.ids, data.sequences


def _numpy(x) -> np.ndarray:  # noqa: ANN001 - a torch tensor or an array
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]


class AudienceIndex:
    """The customers' states of one model and the index over them. Immutable once built
    (safe to share between request threads)."""

    def __init__(self, config: AudienceConfig, model: object, user_ids: list[str], histories: Sequences,
                 now: float | None = None):
        """``model``: a dot-product recommender (``user_vectors``, ``output_table``);
        ``histories``: one row per id of ``user_ids`` (with timestamps for the activity
        term and buyer exclusion); ``now``: epoch seconds the windows end at (default:
        the newest event of the histories)."""
        if len(user_ids) != len(histories):
            raise ValueError(f"{len(user_ids)} user ids but {len(histories)} histories")
        self.config = config
        self.user_ids = list(user_ids)
        self.histories = histories
        self.items_table = _numpy(model.output_table())  # (N + 1, D')
        ts = histories.timestamps
        finite = ts[np.isfinite(ts)] if ts is not None else np.zeros(0)
        self.now = float(now) if now is not None else (float(finite.max()) if len(finite) else 0.0)
        vectors = _numpy(model.user_vectors(histories)) if len(histories) else np.zeros(
            (0, self.items_table.shape[1]), np.float32)
        table = np.zeros((len(histories) + 1, vectors.shape[1] + 1), dtype=np.float32)  # row 0: padding
        table[1:, :-1] = vectors
        table[1:, -1] = self._offsets(vectors)
        self.index = ExactIndex().build(table)
        self._row_of = {u: r + 1 for r, u in enumerate(self.user_ids)}
        self._index_purchases()

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.items_table) - 1

    def _offsets(self, vectors: np.ndarray) -> np.ndarray:
        """Per customer: ``-log Z`` (probability) plus the activity term."""
        c = self.config
        out = np.zeros(len(vectors), dtype=np.float64)
        if c.score == "probability":
            catalog = self.items_table[1:]
            for s in range(0, len(vectors), c.batch_users):
                out[s : s + c.batch_users] = -_logsumexp(vectors[s : s + c.batch_users] @ catalog.T)
        if c.activity_weight:
            out += c.activity_weight * np.log1p(self.recent_counts(c.activity_days))
        return out.astype(np.float32)

    def _row_of_events(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.histories)), self.histories.lengths)

    def recent_counts(self, days: float) -> np.ndarray:
        """(U,) events per customer in the last ``days`` before ``now`` (untimed: none)."""
        ts = self.histories.timestamps
        if ts is None:
            return np.zeros(len(self), dtype=np.int64)
        recent = np.nan_to_num(ts, nan=-np.inf) >= self.now - days * DAY_S
        return np.bincount(self._row_of_events()[recent], minlength=len(self))

    def _index_purchases(self) -> None:
        """Purchases (every event of the model's types when the histories hold no
        purchase) grouped by item: the rows and times of item ``i``'s buyers are
        ``[offsets[i], offsets[i + 1])``, so a query touches its buyers only."""
        h = self.histories
        keep = np.ones(len(h.items), dtype=bool)
        if h.event_types is not None and (h.event_types == PURCHASE).any():
            keep = h.event_types == PURCHASE
        items = h.items[keep]
        ts = h.timestamps[keep] if h.timestamps is not None else np.full(int(keep.sum()), np.nan)
        order = np.argsort(items, kind="stable")
        self._buyer_rows, self._buyer_ts = self._row_of_events()[keep][order], ts[order]
        self._buyer_offsets = np.searchsorted(items[order], np.arange(self.n_items + 2))

    def _purchases(self, item_indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(customer positions, times) of every past purchase of the items."""
        o = self._buyer_offsets
        take = np.concatenate([np.arange(o[i], o[i + 1]) for i in item_indexes]).astype(np.int64)
        return self._buyer_rows[take], self._buyer_ts[take]

    def purchase_counts(self, item_indexes: np.ndarray) -> np.ndarray:
        """(U + 1,) past purchases of the items per customer row (row 0: padding), each
        weighted by 0.5 ** (age / repeat_half_life_days) when that is set (untimed: 1)."""
        rows, ts = self._purchases(item_indexes)
        weights = None
        half_life = self.config.repeat_half_life_days
        if half_life:
            weights = np.where(np.isfinite(ts), 0.5 ** (np.maximum(self.now - ts, 0) / (half_life * DAY_S)), 1.0)
        return np.bincount(rows + 1, weights, minlength=len(self) + 1)

    def allowed(self, item_indexes: np.ndarray) -> np.ndarray | None:
        """(U + 1,) mask of customers to name: without those who bought one of the items
        within ``exclude_buyers_days`` (0: ever, as far as the histories go)."""
        days = self.config.exclude_buyers_days
        if days is None:
            return None
        rows, ts = self._purchases(item_indexes)
        if days > 0:
            with np.errstate(invalid="ignore"):
                rows = rows[ts >= self.now - days * DAY_S]  # untimed purchases (NaN) are not recent
        mask = np.ones(len(self) + 1, dtype=bool)
        mask[0] = False
        mask[1 + rows] = False
        return mask

    def _check(self, item_indexes: np.ndarray) -> np.ndarray:
        idx = np.unique(np.asarray(item_indexes, dtype=np.int64))
        if len(idx) == 0 or idx.min() < 1 or idx.max() > self.n_items:
            raise ValueError(f"item indexes must be in 1..{self.n_items}")
        return idx

    def _answer(self, rows: np.ndarray, scores: np.ndarray) -> AudienceList:
        keep = (rows > 0) & np.isfinite(scores)
        rows, scores = rows[keep], scores[keep]
        return AudienceList([self.user_ids[r - 1] for r in rows.tolist()], [float(s) for s in scores], rows - 1)

    def for_item(self, item_index: int, k: int) -> AudienceList:
        """The ``k`` customers most likely to buy item ``item_index``, best first."""
        idx = self._check(np.array([item_index]))
        if len(self) == 0:
            return AudienceList([], [], np.zeros(0, dtype=np.int64))
        query = np.append(self.items_table[idx[0]], np.float32(1.0))[None, :]
        allowed = self.allowed(idx)
        buyers = np.zeros(0, dtype=np.int64)
        if self.config.repeat_weight:
            counts = self.purchase_counts(idx)
            buyers = np.flatnonzero(counts if allowed is None else counts * allowed)
        rows, scores = self.index.search(query, min(k + len(buyers), len(self)), allowed)
        rows, scores = rows[0], scores[0]
        if len(buyers):  # the past buyers' scores with the repeat term, merged with the rest
            others = ~np.isin(rows, buyers)
            bonus = self.index.vectors()[buyers] @ query[0] + self.config.repeat_weight * np.log1p(counts[buyers])
            rows = np.concatenate([rows[others], buyers])
            scores = np.concatenate([scores[others], bonus.astype(np.float32)])
            order = np.lexsort((rows, -scores))[:k]
            rows, scores = rows[order], scores[order]
        return self._answer(rows, scores)

    def category_scores(self, item_indexes: np.ndarray) -> np.ndarray:
        """(U + 1,) pooled scores of every customer over ``item_indexes`` (row 0: -inf)."""
        idx = self._check(item_indexes)
        c = self.config
        table = self.index.vectors()
        items = self.items_table[idx]
        out = np.full(len(self) + 1, -np.inf, dtype=np.float32)
        for s in range(1, len(table), c.batch_users):
            block = table[s : s + c.batch_users]
            logits = block[:, :-1] @ items.T  # (b, |S|)
            pooled = _logsumexp(logits) if c.category_pooling == "sum" else logits.max(axis=1)
            out[s : s + len(block)] = pooled + block[:, -1]
        if c.repeat_weight:
            out[1:] += c.repeat_weight * np.log1p(self.purchase_counts(idx)[1:])
        return out

    def for_items(self, item_indexes: np.ndarray, k: int) -> AudienceList:
        """The ``k`` customers most likely to buy any of ``item_indexes`` (a category)."""
        idx = self._check(item_indexes)
        if len(self) == 0:
            return AudienceList([], [], np.zeros(0, dtype=np.int64))
        scores = self.category_scores(idx)
        allowed = self.allowed(idx)
        if allowed is not None:
            scores[~allowed] = -np.inf
        rows, top = top_k(scores[None, :], min(k, len(self) + 1))
        return self._answer(rows[0], top[0])

    def row(self, user_id: str) -> int:
        """The customer's row (1-based, as the index holds it); 0 when unknown."""
        return self._row_of.get(user_id, 0)


def audience_from_events(config: AudienceConfig, model: object, items: Vocabulary, event_types: tuple[str, ...],
                         events: pl.DataFrame, dedupe_consecutive: bool = False, now: float | None = None) -> AudienceIndex:
    """Every customer's state from an event table (a store's ``events()``), as serving
    encodes histories: what the API and ``shopformer audience`` build."""
    users, histories = latest_histories(events, items, event_types, dedupe_consecutive, config.history_limit)
    return AudienceIndex(config, model, users, histories, now)
