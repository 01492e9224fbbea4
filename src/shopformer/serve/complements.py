"""The served complements ("frequently bought together", "complete your basket").

Co-purchase statistics are computed from the store's events, not saved with the run:
they are counts, cheap to recount (Online Retail's 400k purchase lines: about a second),
and a store keeps taking purchases after a model is trained, so recounting lets
complements follow the latest baskets without a retraining, and drops an erased
customer's baskets as soon as the erasure is stored. They are indexed by the served
run's item vocabulary (the cart's other signals, the sequence model and the item
vectors, live there too).

Freshness, as for audiences (serve/audience.py): built on the first complements request
for a served version, and rebuilt on the first request after ``refresh_s`` seconds, an
erasure or retention purge, or a reload. One build at a time; other requests wait.

An answer: the cart's items (and, with a ``user_id``, the customer's history before
them) scored by :class:`shopformer.rank.complements.Complements`, then the catalog
filters, then the business rules (an anonymous audience unless a user is named), like
every other recommending answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from shopformer.features.baskets import BASKET_EVENT_TYPES, baskets
from shopformer.features.sequences import Sequences
from shopformer.models.copurchase import CoPurchase, CoPurchaseConfig
from shopformer.rank.complements import Complements, ComplementsConfig, title_tokens
from shopformer.rank.rules import Audience
from shopformer.store import EventStore

from .recommender import Ranked, RecommendationService, Served, rank_exact
from .schemas import Filters


@dataclass(frozen=True)
class ServeComplementsConfig:
    """The served complements. Defaults: the settings chosen on validation invoices of
    UCI Online Retail (benchmarks/results/complements.md): co-purchase alone (every
    sequence-model weight tried lowered Recall@10), and as substitutes the items whose
    title has the same words as a cart item's (colour / size variants named alike). The
    item-vector filter is off: the served model's vectors put items bought by the same
    customers close, i.e. complements, so even cosine >= 0.95 cost a third of Recall@10."""

    copurchase: CoPurchaseConfig = CoPurchaseConfig()
    complements: ComplementsConfig = ComplementsConfig(title_overlap=1.0)
    #: event types whose baskets (sessions, else user-days) count as bought together
    event_types: tuple[str, ...] = BASKET_EVENT_TYPES
    #: recount the store's baskets after this many seconds
    refresh_s: float = 900.0


class UnknownCartItems(KeyError):
    """Cart items the served model does not know (answered with 404 / 422)."""

    def __init__(self, positions: list[int], item_ids: list[str]) -> None:
        super().__init__(item_ids)
        self.positions = positions
        self.item_ids = item_ids


@dataclass(frozen=True)
class Built:
    complements: Complements
    version: str
    made: float  # time.monotonic()
    erasure_id: int
    purge_id: int
    baskets: int = field(default=0)


class ComplementsService:
    """Keeps the co-purchase statistics of the served version and answers carts."""

    def __init__(self, config: ServeComplementsConfig, store: EventStore) -> None:
        self.config = config
        self.store = store
        self._built: Built | None = None
        self._build = threading.Lock()
        self.builds = 0

    def _fresh(self, served: Served, erasure_id: int, purge_id: int) -> Built | None:
        b = self._built
        if (b is None or b.version != served.version or b.erasure_id != erasure_id or b.purge_id != purge_id
                or time.monotonic() - b.made > self.config.refresh_s):
            return None
        return b

    def built(self, served: Served) -> Built:
        """The statistics for ``served``, counted now if missing or stale."""
        erasure_id, purge_id = self.store.last_erasure_id(), self.store.last_purge_id()
        found = self._fresh(served, erasure_id, purge_id)
        if found is not None:
            return found
        with self._build:
            found = self._fresh(served, erasure_id, purge_id)
            if found is not None:
                return found
            items = served.run.items
            bought, _ = baskets(self.store.events(), items, self.config.event_types)
            copurchase = CoPurchase(self.config.copurchase).fit(bought, len(items))
            products = self.store.products(columns=("item_id", "title"))
            titles: list[str | None] = [None] * (len(items) + 1)
            for index, title in zip(items.encode(products["item_id"]), products["title"].to_list()):
                if index > 0:
                    titles[index] = title
            comp = Complements(self.config.complements, copurchase, _unit_vectors(served), title_tokens(titles))
            self._built = Built(comp, served.version, time.monotonic(), erasure_id, purge_id, len(bought))
            self.builds += 1
            return self._built

    def cart(self, service: RecommendationService, served: Served, item_ids: list[str], k: int,
             filters: Filters | None, user_id: str | None = None) -> Ranked:
        """Complements of the cart ``item_ids``; :class:`UnknownCartItems` names the
        items the served model does not know."""
        items = served.run.items
        idx = items.encode(item_ids)
        if (idx == 0).any():
            bad = [i for i, x in enumerate(idx) if x == 0]
            raise UnknownCartItems(bad, [item_ids[i] for i in bad])
        cart = Sequences(np.array([0, len(idx)]), idx)
        comp = self.built(served).complements
        logits = None
        if comp.config.sequence_weight > 0:  # the model reads the customer's history, then the cart
            before = service.history(served, user_id).sequences.items if user_id is not None else np.zeros(0, int)
            seq = np.concatenate([before, idx])
            logits = served.run.model.score(Sequences(np.array([0, len(seq)]), seq))
        scores = comp.scores(cart, logits)
        allowed = service.allowed(served, filters)
        known = (lambda: service.history(served, user_id).length > 0) if user_id is not None else False
        step = service.rules.step(Audience(user_id, known))
        fetch = k if step is None else step.fetch(k, served.n_items)
        top_idx, top = rank_exact(scores, None, allowed, fetch)
        ranked = Ranked(items.decode(top_idx), [round(float(s), 6) for s in top], np.asarray(top_idx), "complements")
        if step is not None:  # pins are never a cart item or one the filters drop
            ranked = service._apply_rules(step, served, ranked, k, cart, filters)
        return ranked


def _unit_vectors(served: Served) -> np.ndarray | None:
    """The normalized item vectors similar items search (None for models without)."""
    if served.vectors is not None and served.vectors.unit is not None:
        return np.asarray(served.vectors.unit, dtype=np.float32)
    table = getattr(served.run.model, "similarity_table", None)
    if table is None:
        return None
    import torch

    with torch.no_grad():
        return torch.nn.functional.normalize(table().detach().float().cpu(), dim=-1).numpy()
