"""A learned audience ranker: which customers buy item ``i`` in the next ``N`` days,
scored by gradient-boosted trees (LightGBM) over (customer, item) features.

The question is the reverse of a recommendation (one item, ranked customers), and on
shop data it is mostly a question of *who buys again and how soon*: past buyers of the
item, customers whose baskets co-occur with it, and how active each customer is. The
hand-set audiences of :mod:`shopformer.rank.audience` add those terms with fixed
weights; this ranker learns how to combine them from an earlier cut whose next ``N``
days are known.

Everything is computed from the events strictly before the cut ``t``
(:func:`shop_state` drops later ones first), so a cut's features do not depend on what
happened after it. Per cut, :class:`ShopState` holds:

- per customer: purchases, orders (distinct purchase times), purchases and orders in
  the last 30 / 90 days, days since the first and the last order, orders per 30 days of
  tenure, distinct items, and how overdue the next order is (days since the last order
  over the mean gap between orders);
- per item: distinct buyers ever and in the last 30 / 90 days, the 30-day trend against
  the 90-day rate, purchases per buyer (how much it is re-bought);
- per (customer, item): past purchases of the item, days since the last and the first
  of them, the item's share of the customer's purchases, the item-to-item co-occurrence
  score (cosine item kNN over the baskets: the "look-alikes of its buyers"), and, with a
  sequence model, its logit ``u . e_i``, log-softmax, the item's rank in the customer's
  list and the customer's rank in the item's column;
- the same season a year before: the customer's orders, the item's buyers and the
  customer's purchases of the item in the ``season_window_days`` that began 365 days
  before the cut (the window the question asks about, a year earlier: shops with
  seasonal stock sell the same things to the same customers each autumn).

Candidates per item (so scoring stays cheap): the union of the top
``candidates_per_source`` customers of the simple audiences: the most active, the past
buyers (most purchases of the item first), the item's buyers in the season a year
before, the co-occurrence score, and the sequence model's audience score (logit + log(1 + recent events) + ``repeat_weight`` * log(1 +
past purchases), the :class:`~shopformer.rank.audience.AudienceConfig` defaults). The
ranker orders them; customers past the candidates follow by activity.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from shopformer.features.sequences import Sequences
from shopformer.models.itemknn import cosine_top_k

DAY_S = 86_400.0

USER_FEATURES = ("u_purchases", "u_orders", "u_purchases_30d", "u_purchases_90d", "u_orders_30d", "u_orders_90d",
                 "u_days_since_first", "u_days_since_last", "u_orders_per_30d", "u_distinct_items", "u_overdue",
                 "u_orders_year_ago")
ITEM_FEATURES = ("i_buyers", "i_buyers_30d", "i_buyers_90d", "i_trend", "i_purchases_per_buyer", "i_buyers_year_ago")
PAIR_FEATURES = ("p_purchases", "p_days_since_last", "p_days_since_first", "p_share", "p_cooc", "p_cooc_user_rank",
                 "p_cooc_90d", "p_overdue", "p_logit", "p_log_softmax", "p_item_rank", "p_logit_user_rank",
                 "p_purchases_year_ago")
YEAR_DAYS = 365.0
FEATURES = USER_FEATURES + ITEM_FEATURES + PAIR_FEATURES


@dataclass(frozen=True)
class AudienceRankerConfig:
    """The candidates, the features' co-occurrence and the LightGBM model. Defaults: the
    setting chosen on the Online Retail validation cut (benchmarks/audience.py: binary
    log loss, 31 leaves, 100 rounds; more rounds were worse there)."""

    #: customers taken from each of the four candidate audiences per item
    candidates_per_source: int = 300
    #: item kNN of the co-occurrence feature and candidates (the benchmark's chosen setting)
    cooc_neighbors: int = 100
    cooc_shrink: float = 0.0
    #: the sequence-model candidate audience: logit + activity_weight * log(1 + events in
    #: the last 90 days) + repeat_weight * log(1 + past purchases of the item)
    activity_weight: float = 1.0
    repeat_weight: float = 8.0
    #: length of the window a year before the cut that the seasonal features and the
    #: year-ago candidates read: [cut - 365 days, cut - 365 days + this); 0 = none
    #: (features missing). The benchmark's horizon, 30 days.
    season_window_days: float = 30.0
    #: "lambdarank" (per item, the customers as a ranked list) or "binary" (log loss)
    objective: Literal["lambdarank", "binary"] = "binary"
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_rounds: int = 100
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in ("lambdarank", "binary"):
            raise ValueError(f"objective must be lambdarank or binary, got {self.objective!r}")
        if min(self.candidates_per_source, self.cooc_neighbors, self.num_leaves, self.n_rounds) < 1:
            raise ValueError("candidates_per_source, cooc_neighbors, num_leaves and n_rounds must be >= 1")
        if not 0 <= self.season_window_days <= YEAR_DAYS:
            raise ValueError(f"season_window_days must be in [0, {YEAR_DAYS:.0f}], got {self.season_window_days}")
        if not 0 < self.learning_rate <= 1 or not 0 < self.feature_fraction <= 1:
            raise ValueError("learning_rate and feature_fraction must be in (0, 1]")


def _column_ranks(col: np.ndarray) -> np.ndarray:
    """0-based rank of each entry of a score column, highest first (ties: lower index)."""
    order = np.lexsort((np.arange(len(col)), -col))
    ranks = np.empty(len(col), dtype=np.float32)
    ranks[order] = np.arange(len(col))
    return ranks


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.isfinite(scores[part])]


class ShopState:
    """Everything the features of one cut need, from the events before ``t`` only."""

    def __init__(self, config: AudienceRankerConfig, history: Sequences, t: float, n_items: int,
                 model: object | None = None) -> None:
        """``history``: one row per customer, purchases with timestamps (later events are
        dropped here); ``model``: a dot-product recommender (``user_vectors``,
        ``output_table``) or None (its features are then missing)."""
        if history.timestamps is None:
            raise ValueError("the audience ranker needs timestamped histories")
        self.config, self.t, self.n_items = config, float(t), n_items
        h = history.keep(~(history.timestamps >= t))  # untimed (NaN) events count as past
        self.history = h
        n_users = len(h)
        self.n_users = n_users
        row = np.repeat(np.arange(n_users), h.lengths)
        ts = np.nan_to_num(h.timestamps, nan=-np.inf)
        days_ago = (self.t - ts) / DAY_S  # inf for untimed
        self.counts = sp.csr_matrix((np.ones(len(h.items), np.float32), (row, h.items)),
                                    shape=(n_users, n_items + 1))
        self.counts.sum_duplicates()
        self.counts_csc = self.counts.tocsc()
        # (customer, item) first and last purchase, looked up by key = row * (N + 1) + item
        key = row * (n_items + 1) + h.items
        order = np.lexsort((ts, key))
        k_sorted, ts_sorted = key[order], ts[order]
        starts = np.flatnonzero(np.r_[True, k_sorted[1:] != k_sorted[:-1]])
        self._pair_keys = k_sorted[starts]
        self._pair_first = ts_sorted[starts]
        self._pair_last = ts_sorted[np.r_[starts[1:], len(k_sorted)] - 1]
        w = config.season_window_days
        season = self._in_season(days_ago)
        # (customer, item) purchases in the season a year before; None: not measured
        self.year_ago = sp.csc_matrix((np.ones(int(season.sum()), np.float32), (row[season], h.items[season])),
                                      shape=(n_users, n_items + 1)) if w else None
        self.user_features = self._user_features(row, ts, days_ago)
        self.item_features = self._item_features(row, h.items, days_ago)
        self.activity = h.lengths.astype(np.float64)
        x = self.counts.copy()
        x.data[:] = 1.0  # binary baskets, as the item kNN baseline reads them
        similarity = cosine_top_k(x, config.cooc_neighbors, config.cooc_shrink)
        self.cooc = np.asarray((x @ similarity).todense(), dtype=np.float32)  # (U, N + 1)
        recent = days_ago <= 90
        x90 = sp.csr_matrix((np.ones(int(recent.sum()), np.float32), (row[recent], h.items[recent])),
                            shape=x.shape)
        x90.data[:] = 1.0
        self.cooc_90d = np.asarray((x90 @ similarity).todense(), dtype=np.float32)  # the latest baskets' look-alikes
        self.logits = self.log_softmax = self.item_rank = None
        if model is not None and n_users:
            vectors = np.asarray(_numpy(model.user_vectors(h)), np.float32)
            table = _numpy(model.output_table())
            logits = vectors @ table[1:].T  # (U, N): item i at column i - 1
            m = logits.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
            self.logits = logits
            self.log_softmax = logits - lse[:, None]
            ranks = np.empty(logits.shape, dtype=np.float32)
            np.put_along_axis(ranks, np.argsort(-logits, axis=1), np.arange(logits.shape[1], dtype=np.float32)[None, :],
                              axis=1)
            self.item_rank = ranks
            recent = np.bincount(row[days_ago <= 90], minlength=n_users)
            self._audience_offset = config.activity_weight * np.log1p(recent)

    def _in_season(self, days_ago: np.ndarray) -> np.ndarray:
        """Which events fall in the season a year before the cut (none without a window)."""
        w = self.config.season_window_days
        return (days_ago > YEAR_DAYS - w) & (days_ago <= YEAR_DAYS) if w else np.zeros(len(days_ago), bool)

    def _user_features(self, row: np.ndarray, ts: np.ndarray, days_ago: np.ndarray) -> np.ndarray:
        n = self.n_users
        purchases = np.bincount(row, minlength=n).astype(np.float32)
        orders_key = np.unique(np.stack([row, ts], axis=1), axis=0)  # distinct (customer, purchase time)
        o_row, o_days = orders_key[:, 0].astype(np.int64), (self.t - orders_key[:, 1]) / DAY_S
        orders = np.bincount(o_row, minlength=n).astype(np.float32)
        first = np.full(n, np.nan, np.float32)
        last = np.full(n, np.nan, np.float32)
        finite = np.isfinite(o_days)
        if finite.any():
            first_v = np.full(n, -np.inf)
            np.maximum.at(first_v, o_row[finite], o_days[finite])
            last_v = np.full(n, np.inf)
            np.minimum.at(last_v, o_row[finite], o_days[finite])
            seen = np.isfinite(last_v)
            first[seen], last[seen] = first_v[seen], last_v[seen]
        distinct = np.diff(self.counts.indptr).astype(np.float32)
        tenure = np.maximum(first, 30.0)
        gap = np.where(orders > 1, (first - last) / np.maximum(orders - 1, 1), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            overdue = last / gap
        return np.stack([
            purchases, orders,
            np.bincount(row[days_ago <= 30], minlength=n), np.bincount(row[days_ago <= 90], minlength=n),
            np.bincount(o_row[o_days <= 30], minlength=n), np.bincount(o_row[o_days <= 90], minlength=n),
            first, last, orders / tenure * 30.0, distinct, overdue, self._season_orders(o_row, o_days, n),
        ], axis=1).astype(np.float32)

    def _season_orders(self, o_row: np.ndarray, o_days: np.ndarray, n: int) -> np.ndarray:
        w = self.config.season_window_days
        if not w:
            return np.full(n, np.nan, np.float32)
        return np.bincount(o_row[self._in_season(o_days)], minlength=n).astype(np.float32)

    def _item_features(self, row: np.ndarray, items: np.ndarray, days_ago: np.ndarray) -> np.ndarray:
        n = self.n_items + 1

        def buyers(mask: np.ndarray) -> np.ndarray:
            pairs = np.unique(row[mask] * n + items[mask])
            return np.bincount(pairs % n, minlength=n).astype(np.float32)

        everyone = buyers(np.ones(len(items), dtype=bool))
        b30, b90 = buyers(days_ago <= 30), buyers(days_ago <= 90)
        purchases = np.bincount(items, minlength=n).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            trend = np.where(b90 > 0, b30 / (b90 / 3.0), np.nan)
            per_buyer = np.where(everyone > 0, purchases / everyone, np.nan)
        w = self.config.season_window_days
        season = buyers(self._in_season(days_ago)) if w else np.full(n, np.nan, np.float32)
        return np.stack([everyone, b30, b90, trend, per_buyer, season], axis=1).astype(np.float32)

    def candidates(self, item: int) -> np.ndarray:
        """The customers (rows) the ranker scores for ``item``: the union of each simple
        audience's top ``candidates_per_source``, in row order."""
        c = self.config.candidates_per_source
        counts = self.counts_csc[:, item].toarray()[:, 0].astype(np.float64)
        sources = [_top(self.activity, c), _top(np.where(counts > 0, counts * 1e6 + self.activity, -np.inf), c),
                   _top(np.where(self.cooc[:, item] > 0, self.cooc[:, item], -np.inf), c)]
        if self.year_ago is not None:  # last season's buyers, most purchases of it first
            season = self.year_ago[:, item].toarray()[:, 0].astype(np.float64)
            sources.append(_top(np.where(season > 0, season * 1e6 + self.activity, -np.inf), c))
        if self.logits is not None:
            sources.append(_top(self.logits[:, item - 1] + self._audience_offset
                                + self.config.repeat_weight * np.log1p(counts), c))
        return np.unique(np.concatenate(sources)).astype(np.int64)

    def features(self, item: int, rows: np.ndarray) -> np.ndarray:
        """(len(rows), len(FEATURES)) float32, NaN where a feature is undefined."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), len(FEATURES)), np.nan, dtype=np.float32)
        nu, ni = len(USER_FEATURES), len(ITEM_FEATURES)
        out[:, :nu] = self.user_features[rows]
        out[:, nu : nu + ni] = self.item_features[item]
        counts = self.counts_csc[:, item].toarray()[:, 0]
        key = rows * (self.n_items + 1) + item
        pos = np.minimum(np.searchsorted(self._pair_keys, key), max(len(self._pair_keys) - 1, 0))
        found = (self._pair_keys[pos] == key) if len(self._pair_keys) else np.zeros(len(rows), bool)
        p = nu + ni
        out[:, p] = counts[rows]
        out[found, p + 1] = (self.t - self._pair_last[pos[found]]) / DAY_S
        out[found, p + 2] = (self.t - self._pair_first[pos[found]]) / DAY_S
        out[:, p + 3] = counts[rows] / np.maximum(self.activity[rows], 1)
        out[:, p + 4] = self.cooc[rows, item]
        out[:, p + 5] = _column_ranks(self.cooc[:, item])[rows]
        out[:, p + 6] = self.cooc_90d[rows, item]
        # days since the last purchase of the item over the customer's mean gap between them
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = (out[:, p + 2] - out[:, p + 1]) / np.maximum(out[:, p] - 1, 1)
            out[:, p + 7] = np.where((out[:, p] > 1) & (gap > 0), out[:, p + 1] / gap, np.nan)
        if self.logits is not None:
            col = self.logits[:, item - 1]
            out[:, p + 8] = col[rows]
            out[:, p + 9] = self.log_softmax[rows, item - 1]
            out[:, p + 10] = self.item_rank[rows, item - 1]
            out[:, p + 11] = _column_ranks(col)[rows]
        if self.year_ago is not None:
            out[:, p + 12] = self.year_ago[:, item].toarray()[rows, 0]
        return out

    def table(self, items: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Every item's candidates' features stacked, and the candidates per item."""
        cands = [self.candidates(int(i)) for i in items]
        x = np.concatenate([self.features(int(i), r) for i, r in zip(items, cands)]) if len(cands) else np.zeros(
            (0, len(FEATURES)), np.float32)
        return x, cands


def _numpy(x) -> np.ndarray:  # noqa: ANN001 - a torch tensor or an array
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def shop_state(config: AudienceRankerConfig, history: Sequences, t: float, n_items: int,
               model: object | None = None) -> ShopState:
    """The features' state of ``history`` at cut ``t`` (see :class:`ShopState`)."""
    return ShopState(config, history, t, n_items, model)


def _ordered(state: ShopState, rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidates by score (ties: lower row), then, up to ``k``, the others by activity."""
    order = np.lexsort((rows, -scores))
    top, top_scores = rows[order][:k], scores[order][:k]
    if len(top) < k:
        rest = np.setdiff1d(np.arange(state.n_users), rows)
        rest = rest[np.lexsort((rest, -state.activity[rest]))][: k - len(top)]
        top = np.concatenate([top, rest])
        top_scores = np.concatenate([top_scores, np.full(len(rest), np.nan)])
    return top, top_scores


class AudienceRanker:
    """LightGBM over the candidates' features; fitted on cuts whose next days are known."""

    def __init__(self, config: AudienceRankerConfig) -> None:
        self.config = config
        self.booster = None

    def _params(self) -> dict:
        c = self.config
        params = {"objective": c.objective, "num_leaves": c.num_leaves, "learning_rate": c.learning_rate,
                  "min_child_samples": c.min_child_samples, "feature_fraction": c.feature_fraction,
                  "bagging_seed": c.seed, "feature_fraction_seed": c.seed, "seed": c.seed,
                  "num_threads": c.threads, "verbose": -1, "deterministic": True}
        if c.objective == "lambdarank":
            params |= {"lambdarank_truncation_level": 200, "eval_at": [100]}
        return params

    def fit(self, cuts: list[tuple[ShopState, np.ndarray, list[np.ndarray]]],
            tables: list[tuple[np.ndarray, list[np.ndarray]]] | None = None) -> "AudienceRanker":
        """``cuts``: (state at the cut, items, per item the rows who bought it in the
        days after the cut); ``tables``: each cut's :meth:`ShopState.table`, when built."""
        import lightgbm as lgb

        xs, ys, groups = [], [], []
        for n, (state, items, buyers) in enumerate(cuts):
            x, cands = tables[n] if tables is not None else state.table(items)
            xs.append(x)
            ys.extend(np.isin(c, b).astype(np.float32) for c, b in zip(cands, buyers))
            groups.extend(len(c) for c in cands)
        x, y = np.concatenate(xs), np.concatenate(ys)
        if not y.any():
            raise ValueError("no candidate bought any item after its cut: nothing to learn")
        data = lgb.Dataset(x, y, group=groups if self.config.objective == "lambdarank" else None,
                           feature_name=list(FEATURES), free_raw_data=True)
        self.booster = lgb.train(self._params(), data, num_boost_round=self.config.n_rounds)
        self.n_train_rows, self.n_train_positives = len(y), int(y.sum())
        return self

    def score(self, state: ShopState, item: int, rows: np.ndarray, n_rounds: int | None = None) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("the audience ranker is not fitted")
        x = state.features(item, rows)
        return self.booster.predict(x, num_iteration=n_rounds or self.config.n_rounds)

    def rank(self, state: ShopState, item: int, k: int, n_rounds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` customers (rows of the state) most likely to buy ``item``, best
        first, with their scores: the candidates by the model, then the others by
        activity (score NaN)."""
        rows = state.candidates(item)
        scores = self.score(state, item, rows, n_rounds) if len(rows) else np.zeros(0)
        return _ordered(state, rows, scores, k)

    def rank_many(self, state: ShopState, items: np.ndarray, k: int, n_rounds: int | None = None,
                  table: tuple[np.ndarray, list[np.ndarray]] | None = None) -> list[np.ndarray]:
        """:meth:`rank`'s rows for many items, scored in one call (``table``: the
        state's :meth:`ShopState.table` of ``items``, when already built)."""
        x, cands = table if table is not None else state.table(items)
        scores = self.booster.predict(x, num_iteration=n_rounds or self.config.n_rounds) if len(x) else np.zeros(0)
        bounds = np.cumsum([0] + [len(c) for c in cands])
        return [_ordered(state, c, scores[a:b], k)[0] for c, a, b in zip(cands, bounds[:-1], bounds[1:])]

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance("gain")
        total = float(gains.sum()) or 1.0
        return {n: round(float(g) / total, 4) for n, g in sorted(zip(FEATURES, gains), key=lambda x: -x[1])}

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "audience_ranker.json").write_text(json.dumps({"config": asdict(self.config),
                                                                  "features": list(FEATURES)}))
        self.booster.save_model(str(folder / "audience_ranker.txt"))

    @classmethod
    def load(cls, folder: Path) -> "AudienceRanker":
        import lightgbm as lgb

        folder = Path(folder)
        meta = json.loads((folder / "audience_ranker.json").read_text())
        if meta["features"] != list(FEATURES):
            raise ValueError(f"{folder} was fitted on other features: refit the audience ranker")
        ranker = cls(AudienceRankerConfig(**meta["config"]))
        ranker.booster = lgb.Booster(model_file=str(folder / "audience_ranker.txt"))
        return ranker
