"""``explain=true`` on the recommendation routes: an explanation object per item.

Kept apart from :mod:`shopformer.serve.recommender` (it only calls that service's
public methods: ``history``, ``allowed``, ``titles``). Per served run version it keeps
one :class:`~shopformer.explain.Explainer`, built on the first explained request:

* co-occurrence counts from the data folder the run was trained on (read once per run
  version; without that folder the collaborative evidence is left empty and a warning
  is logged);
* item content from the model when it was trained with content, else from the store's
  catalog (brand / categories / tags / price bands) as it was at that moment.

Rule provenance records what serving applied: history exclusion and each active
catalog filter, as masks over item indexes (see :mod:`shopformer.explain.rules`). The
business rules' moves (:mod:`shopformer.rank.rules`) are added per item by the routes
(``business_rules``); when they re-ordered the answer, model ranks come from the
model's whole score row.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from shopformer.explain import CoCounts, ExplainConfig, Explainer
from shopformer.explain.explainer import Explanation as ExplainResult
from shopformer.explain.rules import EXCLUDED_HISTORY, history_mask
from shopformer.features.sequences import Sequences

from .recommender import Ranked, RecommendationService, Served
from .schemas import Explanation, Filters

log = logging.getLogger("shopformer.serve")


class ExplainerCache:
    """The Explainer of the served run (one at a time). Keyed by the :class:`Served`
    object itself, not only its version: a served model that grows (new products
    placed by content) is a new ``Served`` and gets a new Explainer; the co-occurrence
    counts, which depend only on the training data, are kept per version."""

    def __init__(self, config: ExplainConfig = ExplainConfig()) -> None:
        self.config = config
        self._lock = threading.Lock()
        #: (the Served it explains, its Explainer): one attribute, read once per request
        self._current: tuple[Served, Explainer] | None = None
        self._counts: tuple[str, CoCounts | None] | None = None

    def get(self, service: RecommendationService, served: Served) -> Explainer:
        current = self._current
        if current is not None and current[0] is served:
            return current[1]
        with self._lock:  # one build at a time; the others wait for it
            current = self._current
            if current is None or current[0] is not served:
                current = (served, self._build(service, served))
                self._current = current
            return current[1]

    def _cocounts(self, served: Served) -> CoCounts | None:
        if self._counts is not None and self._counts[0] == served.version:
            return self._counts[1]
        from shopformer.dataset import load_events, prepare

        run, counts = served.run, None
        try:
            if not run.info.get("data_dir"):  # e.g. a run made outside `train` (no data folder)
                raise ValueError(f"{run.folder} names no data folder")
            data, _ = prepare(load_events(Path(run.info["data_dir"])), run.data_config)
            if run.items.ids[: len(data.items)] != data.items.ids:
                raise ValueError(f"the items in {run.info['data_dir']} changed since {run.folder} was trained")
            counts = CoCounts.from_sequences(data.sequences, data.n_items)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            log.warning("explanations without collaborative evidence: %s", exc)
        self._counts = (served.version, counts)
        return counts

    def _build(self, service: RecommendationService, served: Served) -> Explainer:
        from shopformer.features.content import ContentConfig, build_content

        run = served.run
        content = getattr(run.model, "content", None)
        if content is None:
            products = service.store.products()
            if products.height:
                content = build_content(products, run.items, ContentConfig())
        return Explainer(self.config, run.model, run.items, self._cocounts(served), content)


def rules_removed(
    service: RecommendationService, served: Served, history: Sequences, exclude_history: bool, filters: Filters | None
) -> dict[str, np.ndarray]:
    """Rule label -> (N + 1,) bool mask of the items that rule removed."""
    removed: dict[str, np.ndarray] = {}
    if exclude_history and history.n_interactions:
        removed[EXCLUDED_HISTORY] = history_mask(history.items, served.n_items)
    if filters is None or not filters.active:
        return removed
    singles: list[tuple[str, Filters]] = []
    if filters.available_only:
        singles.append(("filtered: available only", Filters(available_only=True)))
    if filters.category is not None:
        singles.append((f"filtered: category={filters.category}", Filters(category=filters.category)))
    if filters.min_price is not None or filters.max_price is not None:
        lo = "" if filters.min_price is None else f"{filters.min_price:g}"
        hi = "" if filters.max_price is None else f"{filters.max_price:g}"
        singles.append((f"filtered: price {lo}..{hi}", Filters(min_price=filters.min_price, max_price=filters.max_price)))
    for name, single in singles:
        allowed = service.allowed(served, single)
        if allowed is not None:
            mask = ~allowed
            mask[0] = False
            removed[name] = mask
    return removed


def explain_ranked(
    cache: ExplainerCache,
    service: RecommendationService,
    served: Served,
    history: Sequences,
    ranked: Ranked,
    exclude_history: bool,
    filters: Filters | None,
) -> list[Explanation]:
    """One :class:`Explanation` per item of ``ranked`` (answer order), for the one-row
    ``history`` it was recommended from."""
    result = explain_result(cache, service, served, history, ranked, exclude_history, filters)
    return [] if result is None else [Explanation.model_validate(x.to_dict()) for x in result.items]


def explain_result(
    cache: ExplainerCache,
    service: RecommendationService,
    served: Served,
    history: Sequences,
    ranked: Ranked,
    exclude_history: bool,
    filters: Filters | None,
) -> ExplainResult | None:
    """What :func:`explain_ranked` answers from, with the attribution matrix (history
    events x items) the reasons came from (the operator console's heatmap); None when
    ``ranked`` is empty."""
    if not ranked.item_ids:
        return None
    explainer = cache.get(service, served)
    idx = np.asarray(ranked.idx if ranked.idx is not None else served.run.items.encode(ranked.item_ids))
    items = served.run.items

    def titles(index: np.ndarray) -> list[str | None]:
        index = np.asarray(index, dtype=np.int64)
        ids = items.decode(index)
        found = service.titles(ids, served, index)
        return [found.get(i) for i in ids]

    removed = rules_removed(service, served, history, exclude_history, filters)
    # the answer's user vector, when it is the vector of this very history (an event
    # stored between ranking and explaining would make them differ)
    query = None
    if ranked.query is not None and ranked.query_history is not None:
        same = ranked.query_history.without_padding().items
        query = ranked.query if np.array_equal(same, history.without_padding().items) else None
    # business rules re-ordered the answer: an item's model rank is no longer its answer
    # position plus the removed items above it, so rank it in the model's whole score row
    scores = np.asarray(served.run.model.score(history))[0] if ranked.rules else None
    return explainer.explain(history, idx, scores, removed, titles, query)
