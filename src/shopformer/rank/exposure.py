"""New-product exposure: reserved slots for products flagged as new.

A product is new when its catalog ``created_at`` is within ``new_days`` of the request,
or it carries the tag ``new_tag`` (see :func:`is_new`). With ``slots = S``, an answer of
``k`` items holds at least ``min(S, k)`` new items whenever the request may show that
many: new items the model already ranks in the top ``k`` count, and the missing ones
take the reserved positions (``position`` onwards, or by default the last positions,
where they cost the model's order least), pushing out the lowest-ranked items that are
not new. Which new items fill the slots:

- ``best``: the new items this customer's model scores highest;
- ``thompson``: Thompson sampling on click-through: each new item's CTR is drawn from
  Beta(prior_clicks + clicks, prior_misses + impressions - clicks) (its impressions and
  the clicks attributed to them, see :mod:`shopformer.feedback.attribution`), and the
  highest draws win, among the ``pool`` new items the model scores highest for this
  customer (so exploration stays among plausible items). An item shown often and rarely
  clicked is drawn low and gives way; an unseen one is drawn from the prior and gets
  its chance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from .diversity import Shift

POLICIES = ("best", "thompson")


@dataclass(frozen=True)
class ExposureConfig:
    """slots: new items guaranteed in each answer (0: off).
    policy: ``best`` (model score) or ``thompson`` (sampled click-through).
    position: 1-based position of the first reserved slot (None: the last ``slots`` positions).
    new_days: a product created within this many days is new.
    new_tag: a product with this tag is new (None: tags do not count).
    prior_clicks, prior_misses: the Beta prior of a new item's click-through.
    pool: Thompson sampling draws among this many of the customer's best-scored new items."""

    slots: int = 0
    policy: Literal["best", "thompson"] = "best"
    position: int | None = None
    new_days: float = 30.0
    new_tag: str | None = "new"
    prior_clicks: float = 1.0
    prior_misses: float = 1.0
    pool: int = 20

    def __post_init__(self) -> None:
        if self.slots < 0:
            raise ValueError(f"slots must be >= 0, got {self.slots}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.position is not None and self.position < 1:
            raise ValueError(f"position must be >= 1, got {self.position}")
        if self.new_days < 0 or self.prior_clicks <= 0 or self.prior_misses <= 0 or self.pool < 1:
            raise ValueError("new_days must be >= 0, prior_clicks and prior_misses > 0, pool >= 1")

    @property
    def active(self) -> bool:
        return self.slots > 0


def is_new(config: ExposureConfig, created_at: datetime | None, tags: Sequence[str] | None, now: datetime) -> bool:
    """Whether a product counts as new at ``now``."""
    if config.new_tag is not None and tags and config.new_tag.casefold() in {t.casefold() for t in tags}:
        return True
    return created_at is not None and now - timedelta(days=config.new_days) <= created_at <= now


@dataclass(frozen=True)
class ClickThrough:
    """A new item's impressions and the clicks attributed to them."""

    impressions: int = 0
    clicks: int = 0


@dataclass
class Exposed:
    item_ids: list[str]
    scores: list[float]
    shifts: list[Shift]


def choose(config: ExposureConfig, candidates: Sequence[str], scores: Sequence[float], n: int,
           ctr: Mapping[str, ClickThrough] | None = None, rng: np.random.Generator | None = None) -> list[int]:
    """Positions into ``candidates`` (new items with this customer's ``scores``, any
    order) of the ``n`` that fill the reserved slots, best first."""
    if n <= 0 or not len(candidates):
        return []
    s = np.asarray(scores, dtype=np.float64)
    by_score = np.lexsort((np.arange(len(s)), -s))  # ties: the given order
    if config.policy == "best":
        return [int(p) for p in by_score[:n]]
    pool = by_score[: max(n, config.pool)]
    ctr = ctr or {}
    seen = [ctr.get(candidates[p], ClickThrough()) for p in pool]
    clicks = np.array([min(c.clicks, c.impressions) for c in seen], dtype=np.float64)
    misses = np.array([c.impressions for c in seen], dtype=np.float64) - clicks
    rng = rng if rng is not None else np.random.default_rng()
    draws = rng.beta(config.prior_clicks + clicks, config.prior_misses + misses)
    return [int(pool[p]) for p in np.argsort(-draws, kind="stable")[:n]]


def reserve(config: ExposureConfig, item_ids: Sequence[str], scores: Sequence[float], k: int,
            new_ids: Sequence[str], new_scores: Sequence[float], ctr: Mapping[str, ClickThrough] | None = None,
            rng: np.random.Generator | None = None) -> Exposed:
    """The answer (at most ``k``) from the ranked ``item_ids`` with the reserved slots
    filled. ``new_ids``/``new_scores``: every new item this request may show, with the
    customer's scores (those already in ``item_ids`` are recognized)."""
    answer, out_scores = list(item_ids[:k]), [float(s) for s in scores[:k]]
    new = set(new_ids)
    need = min(config.slots, k) - sum(i in new for i in answer)
    if not config.active or need <= 0:
        return Exposed(answer, out_scores, [])
    shown = set(answer)
    pool = [(i, float(s)) for i, s in zip(new_ids, new_scores) if i not in shown and np.isfinite(s)]
    picked = [pool[p] for p in choose(config, [i for i, _ in pool], [s for _, s in pool], need, ctr, rng)]
    if not picked:
        return Exposed(answer, out_scores, [])
    rank = {i: r + 1 for r, i in enumerate(item_ids)}
    # room: drop the lowest-ranked items that are not new (when the answer is full)
    drop = max(0, len(answer) + len(picked) - k)
    dropped: list[str] = []
    for r in range(len(answer) - 1, -1, -1):
        if len(dropped) == drop:
            break
        if answer[r] not in new:
            dropped.append(answer.pop(r))
            out_scores.pop(r)
    first = len(answer) if config.position is None else min(config.position - 1, len(answer))
    for n, (i, s) in enumerate(picked):
        answer.insert(first + n, i)
        out_scores.insert(first + n, s)
    final = {i: r + 1 for r, i in enumerate(answer)}
    shifts = [Shift(i, "new_item_slot", rank.get(i), final[i]) for i, _ in picked]
    shifts += [Shift(i, "new_item_slot", rank[i], None) for i in reversed(dropped)]
    return Exposed(answer, out_scores, shifts)
