"""Explainer: the four kinds of reasons and the sentence for a page of recommendations.

One object per served model, holding what does not change between requests (the
item-column scorer, the co-occurrence matrix, the item content); :meth:`Explainer.explain`
then costs one batched model call (occlusion) plus small sparse / array lookups. It is
what the CLI, the API and the fidelity benchmark share, so what is benchmarked is
what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from shopformer.explain.attribution import Attribution, OcclusionConfig, attribute, item_scorer
from shopformer.explain.evidence import CoCounts, content_evidence
from shopformer.explain.reasons import (
    CollaborativeReason,
    ContentReason,
    EventReason,
    ItemExplanation,
    SharedAttribute,
)
from shopformer.explain.rules import provenance, provenance_from_removed
from shopformer.explain.sentence import SentenceConfig, build_sentence
from shopformer.features.content import ItemContent
from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.types import EVENT_TYPES

#: item indexes -> their titles (None where the catalog has none)
TitleLookup = Callable[[np.ndarray], Sequence[str | None]]


@dataclass(frozen=True)
class ExplainConfig:
    """top_events / top_collaborative: reasons of each kind listed per item (the
    attribution matrix keeps them all).
    max_removed_scored: rule provenance reads the scores of the items the rules removed
    when they are at most this many (history exclusion: the history's items), with the
    occlusion's own call; above it (a filter that removes most of the catalog) it scores
    the whole catalog (``rules.provenance_from_removed`` / ``rules.provenance``)."""

    occlusion: OcclusionConfig = OcclusionConfig()
    sentence: SentenceConfig = SentenceConfig()
    top_events: int = 3
    top_collaborative: int = 3
    max_removed_scored: int = 2048


@dataclass(frozen=True)
class Explanation:
    """Reasons per recommended item, and the attribution matrix they came from (for the
    heatmap)."""

    items: list[ItemExplanation]
    attribution: Attribution
    history_ids: list[str] = field(default_factory=list)


class Explainer:
    def __init__(
        self,
        config: ExplainConfig,
        model: object,
        items: Vocabulary,
        cocounts: CoCounts | None = None,
        content: ItemContent | None = None,
        titles: TitleLookup | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.items = items
        self.cocounts = cocounts
        self.content = content
        self.titles = titles
        self.scorer = item_scorer(model)

    def explain(
        self,
        history: Sequences,
        items: np.ndarray,
        scores: np.ndarray | None = None,
        removed: Mapping[str, np.ndarray] | None = None,
        titles: TitleLookup | None = None,
        user_vector: np.ndarray | None = None,
    ) -> Explanation:
        """Explain ``items`` (indexes, answer order) recommended from row 0 of
        ``history``. With ``removed`` (rule label -> (N + 1,) bool mask of items the
        rule removed) the rule provenance is filled, from ``scores`` (the model's
        (N + 1,) scores of the history) when given, else from the removed items' scores
        or the whole catalog's (see the config). ``user_vector``: the history's user
        vector the answer was retrieved with (a Transformer's query), reused by the
        occlusion."""
        c = self.config
        h = history.rows(np.array([0])).without_padding()
        items = np.asarray(items, dtype=np.int64).ravel()
        need_row = removed is not None and scores is None  # provenance ranks the whole catalog
        ask, dropped = items, None
        if need_row:
            union = np.zeros(0, dtype=np.int64)
            if removed:
                union = np.flatnonzero(np.logical_or.reduce([np.asarray(m, dtype=bool) for m in removed.values()]))
            if len(union) <= c.max_removed_scored:  # their scores ride along the occlusion's call
                ask, dropped, need_row = np.concatenate([items, union]), union, False
        att = attribute(self.model, h, ask, c.occlusion, self.scorer, catalog=need_row, user_vector=user_vector)
        if dropped is not None:
            k = len(items)
            dropped_scores = att.full[k:]
            att = replace(att, items=att.items[:k], full=att.full[:k], values=att.values[:, :k])
        hist = att.history
        kinds = [None] * len(hist) if h.event_types is None else [EVENT_TYPES[int(t)] for t in h.event_types]
        ids = self.items.decode(np.concatenate([hist, items]))
        hist_ids, item_ids = ids[: len(hist)], ids[len(hist):]
        title_of = self._titles(titles or self.titles, np.concatenate([hist, items]), ids)
        shares = att.shares()

        verb = self.cocounts.verb if self.cocounts is not None else "bought"
        collab: list[tuple[CollaborativeReason, ...]] = [()] * len(items)
        customers: list[int | None] = [None] * len(items)
        if self.cocounts is not None:
            distinct, last = _latest_first(hist)
            counts = self.cocounts.together(distinct, items)  # (distinct history items, K)
            customers = [int(x) for x in self.cocounts.customers(items)]
            for j in range(len(items)):
                order = np.argsort(-counts[:, j], kind="stable")[: c.top_collaborative]
                collab[j] = tuple(
                    CollaborativeReason(hist_ids[last[a]], title_of.get(hist_ids[last[a]]), int(counts[a, j]), verb)
                    for a in order if counts[a, j] > 0
                )
        content: list[ContentReason | None] = [None] * len(items)
        if self.content is not None:
            for j, m in enumerate(content_evidence(self.content, hist, items)):
                shared = tuple(
                    SharedAttribute(s.field, s.value, tuple(dict.fromkeys(hist_ids[p] for p in reversed(s.positions))))
                    for s in m.shared
                )
                similar = None if m.text_position is None else hist_ids[m.text_position]
                content[j] = ContentReason(shared, similar, m.text_similarity)
        rules = [None] * len(items)
        if removed is not None and scores is not None:
            rules = provenance(scores, items, removed)
        elif dropped is not None:
            rules = provenance_from_removed(items, att.full, dropped, dropped_scores, removed)
        elif removed is not None:
            rules = provenance(att.catalog, items, removed)

        # top events of every item at once: largest attribution first, ties to the more
        # recent event (rows reversed, then a stable sort)
        n_ev = len(att.positions)
        values = np.nan_to_num(att.values, nan=-np.inf)
        top = (n_ev - 1 - np.argsort(-values[::-1], axis=0, kind="stable"))[: c.top_events]  # (T, K)
        positions, vals, shr = att.positions.tolist(), att.values.tolist(), shares.tolist()
        out = []
        for j, item in enumerate(items.tolist()):
            events = tuple(
                EventReason(positions[e], hist_ids[positions[e]], title_of.get(hist_ids[positions[e]]),
                            kinds[positions[e]], round(vals[e][j], 6), round(shr[e][j], 4))
                for e in top[:, j].tolist() if vals[e][j] > 0
            )
            sentence = build_sentence(events, collab[j], content[j], customers[j], c.sentence, verb, title_of)
            out.append(ItemExplanation(
                item_ids[j], item, round(float(att.full[j]), 6), events, len(att.positions), len(hist),
                collab[j], customers[j], content[j], rules[j], sentence,
            ))
        return Explanation(out, att, hist_ids)

    @staticmethod
    def _titles(lookup: TitleLookup | None, idx: np.ndarray, ids: list[str]) -> dict[str, str | None]:
        if lookup is None:
            return {}
        return dict(zip(ids, lookup(idx)))


def _latest_first(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct history items, most recent first, and each one's latest position."""
    rev = hist[::-1]
    distinct, first_in_rev = np.unique(rev, return_index=True)
    order = np.argsort(first_in_rev)
    return distinct[order], (len(hist) - 1 - first_in_rev[order])


def titles_from(products, items: Vocabulary) -> TitleLookup:  # noqa: ANN001 - a polars DataFrame
    """A :data:`TitleLookup` over a products table (``item_id``, ``title``)."""
    table: list[str | None] = [None] * items.size
    if products is not None and products.height and "title" in products.columns:
        idx = items.encode(products["item_id"])
        for i, t in zip(idx.tolist(), products["title"].to_list()):
            if i > 0 and t:
                table[i] = t
    return lambda index: [table[i] if 0 <= i < len(table) else None for i in np.asarray(index).tolist()]
