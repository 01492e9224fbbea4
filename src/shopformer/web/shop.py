"""The storefront's answers, computed in the server with the app's service objects (the
same pipeline the API routes call): recommendations with their explanations, similar
items, items bought together, search with facets, suggestions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastapi import Request

from shopformer.features.sequences import Sequences
from shopformer.rank.rules import Audience
from shopformer.search import SearchFilter
from shopformer.serve.explanations import explain_ranked
from shopformer.serve.feedback import answered
from shopformer.serve.recommender import RecommendationService, Served, UnknownItemError
from shopformer.serve.routes.search import _has_history, _personal
from shopformer.serve.search import SearchNotReady

from .access import Access
from .cards import Card, cards
from .visitor import Visitor

NO_MODEL = "No model is loaded yet, so there are no recommendations (start the server with a run)."


@dataclass
class Recs:
    """A recommendation list as a page shows it."""

    heading: str
    items: list[Card] = field(default_factory=list)
    basis: str = "guest"  # "customer": the customer's stored history; "guest": the items touched here
    strategy: str = "popularity"
    history_length: int = 0
    note: str | None = None
    model: str | None = None
    request_id: str | None = None  # the answer's impression (links and events on the page carry it)


@dataclass
class Found:
    """A search answer as the search page shows it."""

    query: str
    items: list[Card] = field(default_factory=list)
    facets: dict[str, Any] = field(default_factory=dict)
    corrected: str | None = None
    strategy: str = ""
    error: str | None = None
    request_id: str | None = None


class Shop:
    """The answers for one request; ``state`` is the app's ``app.state``."""

    def __init__(self, state: Any, request: Request | None = None, viewer: tuple[Access, Visitor] | None = None) -> None:
        self.state = state
        self.service: RecommendationService = state.service
        #: the page request whose panels are logged as impressions, each panel one answer
        #: with its request id (None: nothing logged, as for the warm-up's renders)
        self.request = request
        self.viewer = viewer  # who the page is for: the impressions' customer and session

    def _shown(self, route: str, placement: str, item_ids: list[str], served: Served | None, strategy: str | None,
               experiment: str | None = None, variant: str | None = None) -> str | None:
        """Log one panel as an answer, as the API's routes do (``serve.feedback.answered``):
        the customer the page browses as (else the guest's visitor id, the user id of the
        events this browser posts) and the visitor id as the session."""
        if self.request is None or not item_ids:
            return None
        user = session = None
        if self.viewer is not None:
            access, visitor = self.viewer
            session = visitor.visitor_id
            who = self.browsing_as(access, visitor) or session
            try:
                user = self.user_id(who) if who is not None else None
            except ValueError:  # another key's pseudonym: no customer to name
                user = None
        return answered(self.request, None, route=route, items=item_ids, placement=placement, served=served,
                        strategy=strategy, user_id=user, session_id=session, experiment=experiment, variant=variant)

    # -- customers ------------------------------------------------------------------------
    def user_id(self, customer: str) -> str:
        """The id the store knows ``customer`` by (its pseudonym on a pseudonymous server).
        Raises ValueError for an id that is another key's pseudonym."""
        pseudonyms = self.state.pseudonyms
        return pseudonyms.user(customer) if pseudonyms is not None else customer

    def known_customers(self, limit: int = 12) -> list[str]:
        served = self.service.served
        return list(served.run.users.ids[:limit]) if served is not None else []

    def browsing_as(self, access: Access, visitor: Visitor) -> str | None:
        """The customer whose data the page uses (None: the visitor is a guest)."""
        return visitor.customer if visitor.customer and access.read else None

    # -- recommendations ----------------------------------------------------------------
    def recommendations(self, access: Access, visitor: Visitor, k: int = 8) -> Recs:
        """The customer's recommendations (from their stored history), else the guest's
        (from the items touched in this browser), every item explained."""
        service = self.service
        served = service.served
        if served is None:
            return Recs("Recommended for you", note=NO_MODEL)
        customer = self.browsing_as(access, visitor)
        experiment = variant = None
        if customer is not None:
            uid = self.user_id(customer)
            served, experiment, variant = service.for_user(uid)  # the customer's variant's run in an experiment
            exclude = served.run.repeats is None  # a run that learned repeat purchases offers them again
            ranked, n = service.recommend_user(served, uid, k, exclude, None)
            history = service.history(served, uid).sequences
        else:
            ranked, n, _ = service.recommend_items(served, visitor.trail, k, True, None)
            idx = served.run.items.encode(visitor.trail) if visitor.trail else np.zeros(0, dtype=np.int64)
            idx = np.asarray(idx)[np.asarray(idx) > 0]
            history = Sequences(np.array([0, len(idx)]), idx)
        found = cards(service.store, ranked.item_ids, service.titles(ranked.item_ids, served, ranked.idx))
        explained = explain_ranked(self.state.explainers, service, served, history, ranked,
                                   customer is None or served.run.repeats is None, None)
        for card, score, why in zip(found, ranked.scores, explained):
            card.score, card.explanation = score, why
        heading = {"history": "Recommended for you", "trending": "Trending now"}.get(ranked.strategy, "Popular right now")
        note = None
        if ranked.strategy != "history":
            note = ("No history yet: these are the picks for a new visitor. Open a product or add one to the cart "
                    "and this list adapts at once.")
        rid = self._shown("user_recommendations" if customer else "session", "storefront_recs", ranked.item_ids, served,
                          ranked.strategy, experiment, variant)
        return Recs(heading, found, "customer" if customer else "guest", ranked.strategy, n, note,
                    f"{served.name} ({served.version})", rid)

    # -- around one product ---------------------------------------------------------------
    def similar(self, item_id: str, k: int = 6) -> Recs:
        service = self.service
        served = service.served
        if served is None:
            return Recs("Similar items", note=NO_MODEL)
        try:
            ranked = service.similar(served, item_id, k, None)
        except UnknownItemError:
            return Recs("Similar items", note="The model has not been trained on this product yet.")
        found = cards(service.store, ranked.item_ids, service.titles(ranked.item_ids, served, ranked.idx))
        for card, score in zip(found, ranked.scores):
            card.score = score
        return Recs("Similar items", found, strategy="similar", note="Items the model places close to this one.",
                    request_id=self._shown("similar", "storefront_similar", ranked.item_ids, served, "similar"))

    def together(self, item_id: str, k: int = 4) -> Recs:
        """Items customers had together with ``item_id``: the co-occurrence counts of the
        data the served model was trained on (the explanations' collaborative evidence).
        Without those counts, the model's next picks after this item, said as such."""
        service = self.service
        served = service.served
        if served is None:
            return Recs("Frequently bought together", note=NO_MODEL)
        counts = self.state.explainers.get(service, served).cocounts
        x = served.run.items.get(item_id)
        if counts is None or x == 0 or x > counts.n_items:
            ranked, _, _ = service.recommend_items(served, [item_id], k, True, None)
            found = cards(service.store, ranked.item_ids, service.titles(ranked.item_ids, served, ranked.idx))
            return Recs("Goes well with", found, strategy="next",
                        note="No co-purchase counts for this product: the model's next picks after it.",
                        request_id=self._shown("together", "storefront_together", ranked.item_ids, served, "next"))
        column = counts.matrix[:, [x]]
        together = np.asarray((counts.matrix.T @ column).todense()).ravel()  # (N + 1,) customers with both
        together[[0, x]] = 0
        top = [int(i) for i in np.argsort(-together, kind="stable")[:k] if together[i] > 0]
        verb = counts.verb
        heading = "Frequently bought together" if verb == "bought" else f"Often {verb} together"
        if not top:
            return Recs(heading, strategy="together", note=f"No customer {verb} this with another product yet.")
        ids = served.run.items.decode(np.array(top))
        found = cards(service.store, ids, service.titles(ids, served, np.array(top)))
        for card, i in zip(found, top):
            n = int(together[i])
            card.note = f"{n} customer{'s' if n != 1 else ''} {verb} both"
        return Recs(heading, found, strategy="together",
                    note=f"Counted over the customers in the data the model was trained on ({verb} both).",
                    request_id=self._shown("together", "storefront_together", ids, served, "together"))

    # -- search ---------------------------------------------------------------------------
    def search(self, query: str, flt: SearchFilter, customer: str | None, k: int = 24) -> Found:
        searching = self.state.search
        if searching is None:
            return Found(query, error="Search is off on this server (SHOPFORMER_SEARCH=0).")
        try:
            searcher = searching.require()
        except SearchNotReady as exc:
            return Found(query, error=str(exc))
        uid = self.user_id(customer) if customer is not None else None
        with searching.slots:
            personal, served, arm = None, None, (None, None)
            if uid is not None and searcher.config.personal_weight > 0:
                personal, served, arm = _personal(self.service, uid)
            # the business rules, as GET /v1/search applies them (a pin moves a match, never inserts one)
            step = self.service.rules.step(Audience(uid, lambda: _has_history(self.service, uid)), query=query)
            result = searcher.search(query, k if step is None else step.fetch(k), flt, personal=personal)
        hits = result.hits
        if step is not None:
            by_id = {h.item_id: h for h in hits}
            hits = [by_id[i] for i in step.apply([h.item_id for h in hits], [h.score for h in hits], k).item_ids]
        titles = {h.item_id: h.title for h in hits}
        found = cards(self.service.store, [h.item_id for h in hits], titles)
        for card, hit in zip(found, hits):
            card.score = hit.score
        ranker = served if served is not None and "personal" in result.strategy else None
        experiment, variant = arm if ranker is not None else (None, None)
        rid = self._shown("search", "storefront_search", [h.item_id for h in hits], ranker, result.strategy,
                          experiment, variant)
        return Found(result.query, found, result.facets, result.corrected_query, result.strategy, request_id=rid)

    def suggest(self, prefix: str, k: int = 8) -> list[dict[str, Any]]:
        searching = self.state.search
        if searching is None or not searching.ready or not prefix.strip():
            return []
        return [{"text": s.text, "kind": s.kind, "item_id": s.item_id} for s in searching.require().suggest(prefix, k)]

    def top_item(self, query: str) -> str | None:
        """The product a query finds first: how a search joins a history (as the API does)."""
        searching = self.state.search
        return searching.top_item(query) if searching is not None and searching.ready else None
