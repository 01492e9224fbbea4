"""Repeat purchases: a model's scores with the customer's past items let back in.

Next-item models rank what a customer has not had yet, and evaluation and answers leave
the history out, so a consumable bought again can never be recommended (on UCI Online
Retail, a quarter of the held-out purchases are such repeats). :class:`RepeatAware`
wraps any fitted model as a mixture of two choices:

    P(next = i) = P(repeat)     * q(i)         for an item i in the history
                = (1 - P(repeat)) * p_model(i)  for any other item

* ``P(repeat)``: the customer's own share of repeats among their purchases after the
  first (read from the history being scored), shrunk to everyone's share in training
  with ``user_prior`` pseudo-events;
* ``q(i)``: over the history's items, proportional to ``count ** count_power`` (how often
  they had it), ``exp(-recency_decay * events since they last had it)`` and the item's
  own repeat rate in training (the share of its purchases that were someone's repeat),
  shrunk to the overall rate with ``item_prior``;
* ``p_model``: the wrapped model's scores as a softmax over the items not in the history
  (``temperature`` scales them first: 1 for models trained with a softmax, such as the
  Transformers; chosen on validation for the others).

Its scores are those log-probabilities, so it is ranked WITH the history (evaluate with
``exclude_history=False``). :func:`shopformer.evaluate.repeats.choose_repeat_config`
picks every setting on validation from a small grid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shopformer.features.sequences import Sequences


@dataclass(frozen=True)
class RepeatConfig:
    user_prior: float = 10.0
    item_prior: float = 10.0
    count_power: float = 1.0
    recency_decay: float = 0.05
    temperature: float = 1.0


def repeat_flags(seqs: Sequences) -> np.ndarray:
    """(N,) True where an event's item already occurred earlier in its row."""
    rows = np.repeat(np.arange(len(seqs)), seqs.lengths)
    key = rows.astype(np.int64) * (int(seqs.items.max(initial=0)) + 1) + seqs.items
    _, first = np.unique(key, return_index=True)
    flags = np.ones(len(key), dtype=bool)
    flags[first] = False
    return flags


@dataclass
class RepeatStats:
    """What training says about repeats: everyone's share, and each item's."""

    overall: float  # share of events after a row's first that repeat an earlier item
    item_repeats: np.ndarray  # (N + 1,) repeat events of each item
    item_events: np.ndarray  # (N + 1,) events of each item

    @classmethod
    def of(cls, train: Sequences, n_items: int) -> RepeatStats:
        flags = repeat_flags(train)
        opportunities = int(np.maximum(train.lengths - 1, 0).sum())
        return cls(float(flags.sum()) / max(1, opportunities),
                   np.bincount(train.items[flags], minlength=n_items + 1).astype(np.float64),
                   np.bincount(train.items, minlength=n_items + 1).astype(np.float64))

    def item_rate(self, prior: float) -> np.ndarray:
        num, den = self.item_repeats + prior * self.overall, self.item_events + prior
        return np.divide(num, den, out=np.full(len(den), self.overall), where=den > 0)  # unseen: everyone's


class RepeatAware:
    """``base`` (fitted) with repeats; ``stats`` from the same training sequences."""

    name = "repeat"

    def __init__(self, config: RepeatConfig, base: object, stats: RepeatStats) -> None:
        self.config, self.base, self.stats = config, base, stats

    def save(self, folder: Path, extra: dict | None = None) -> None:
        """``config.json`` (the settings, everyone's repeat share and ``extra``, such as the
        validation scores) and ``stats.npz`` (per-item counts) in ``folder``: a run's
        ``repeats/``, which serving and evaluation read beside the model."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "stats.npz", item_repeats=self.stats.item_repeats, item_events=self.stats.item_events)
        meta = {"config": asdict(self.config), "overall": self.stats.overall, **(extra or {})}
        (folder / "config.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, base: object) -> RepeatAware:
        folder = Path(folder)
        meta = json.loads((folder / "config.json").read_text())
        with np.load(folder / "stats.npz") as w:
            stats = RepeatStats(float(meta["overall"]), w["item_repeats"], w["item_events"])
        return cls(RepeatConfig(**meta["config"]), base, stats)

    def score(self, history: Sequences, base_scores: np.ndarray | None = None) -> np.ndarray:
        """(U, N + 1) log-probabilities of the next item; ``base_scores``: the wrapped
        model's scores of ``history`` when the caller has them."""
        base = np.asarray(self.base.score(history) if base_scores is None else base_scores, dtype=np.float64)
        past = past_items(history, base.shape[1])
        p_rep, log_rep = self.repeat_part(history, past)
        out = np.log1p(-p_rep)[:, None] + others_log_probs(base, past, self.config.temperature)
        out[past.rows, past.items] = log_rep
        out[:, 0] = -np.inf
        return out.astype(np.float32)

    def repeat_part(self, history: Sequences, past: PastItems) -> tuple[np.ndarray, np.ndarray]:
        """(U,) P(repeat) per row and (P,) log P(next = that past item) per past item."""
        c = self.config
        n_rows = len(history)
        distinct = np.bincount(past.rows, minlength=n_rows)
        reps = np.maximum(history.lengths - distinct, 0)
        chances = np.maximum(history.lengths - 1, 0) + c.user_prior
        p_rep = np.divide(reps + c.user_prior * self.stats.overall, chances, out=np.full(n_rows, self.stats.overall),
                          where=chances > 0)  # no chance to repeat yet and no prior: everyone's share
        p_rep = np.where(distinct > 0, np.clip(p_rep, 1e-9, 1 - 1e-9), 0.0)
        # which past item: count, recency and the item's own repeat rate
        log_w = (c.count_power * np.log(past.counts) - c.recency_decay * past.since
                 + np.log(self.stats.item_rate(c.item_prior)[past.items]))
        log_w_max = np.full(n_rows, -np.inf)
        np.maximum.at(log_w_max, past.rows, log_w)
        w = np.exp(log_w - log_w_max[past.rows])
        total = np.bincount(past.rows, weights=w, minlength=n_rows)
        with np.errstate(divide="ignore"):  # a weight that underflowed is a probability of 0: -inf
            return p_rep, np.log(p_rep[past.rows]) + np.log(w / total[past.rows])


@dataclass
class PastItems:
    """The distinct items of each history row: (P,) row, item, how many times, and how
    many events ago it last occurred (0 = the latest event)."""

    rows: np.ndarray
    items: np.ndarray
    counts: np.ndarray
    since: np.ndarray


def past_items(history: Sequences, width: int) -> PastItems:
    rows = np.repeat(np.arange(len(history)), history.lengths)
    pos = np.arange(len(history.items)) - np.repeat(history.offsets[:-1], history.lengths)
    from_end = np.repeat(history.lengths, history.lengths) - 1 - pos
    key = rows.astype(np.int64) * width + history.items
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    since = np.full(len(uniq), np.inf)
    np.minimum.at(since, inverse, from_end)
    keep = uniq % width > 0
    return PastItems(uniq[keep] // width, uniq[keep] % width, counts[keep], since[keep])


def others_log_probs(base: np.ndarray, past: PastItems, temperature: float) -> np.ndarray:
    """(U, N + 1) the model's log-softmax of ``base / temperature`` over the items not in
    each row's history (-inf for those and for padding)."""
    z = np.asarray(base, dtype=np.float64) / temperature
    z[:, 0] = -np.inf
    z[past.rows, past.items] = -np.inf
    z_max = z.max(axis=1, keepdims=True)
    log_norm = z_max[:, 0] + np.log(np.exp(z - z_max).sum(axis=1))
    return z - log_norm[:, None]
