"""RecommendationService: the loaded model, user histories from the store, filters.

The served model lives in ONE attribute holding an immutable :class:`Served` (run +
version + load time). Reads take that reference once per request and use it
throughout, so a request never mixes the old model with the new vocabulary; a reload
loads and warms the new run completely, then replaces the attribute (an atomic
assignment): no lock on the read path, no failed request during a swap.

Several processes (``serve --workers N``, replicas) share one store: every load that
an operator asks for (start-up with a run, ``POST /v1/admin/reload``) is recorded in the
store, and each process checks that record every ``sync_s`` seconds and loads the same
run (:meth:`RecommendationService.sync`), so a reload reaches all of them (at once where
the Redis channel of serve/shared_state.py carries the notice).

Histories: a user's recommendation re-encodes the user's latest ``history_limit``
events from the store, kept only if their type is one the model was trained on (the
run's ``DataConfig``) and their item is in the model's vocabulary (unknown items are
ignored). The encoded history is cached per user and dropped when events for that
user are posted through this service (or after ``cache_ttl_s``; with ``cache_check``,
also as soon as any process stores an event of that user; with ``SHOPFORMER_REDIS_URL``,
as soon as the process that stored it says so on the channel, serve/shared_state.py),
and with it the user vector
of the dot-product models, so a repeated request costs one index search. An erasure
(``DELETE /v1/users/{id}``) drops the user's entry here; other processes drop theirs
because the user's newest stored position changes (``cache_check``) and, without it,
within ``sync_s`` seconds, when the sync thread sees a new erasure receipt in the store
and empties the whole cache (:meth:`RecommendationService.sync_erasures`). A user the model has
never seen but who has events is personalised from those events; a user with no usable
history gets the model's empty-history scores (popularity for the baselines).

Retrieval: for the dot-product models (the Transformers, see
:mod:`shopformer.serve.retrieval`) a reload builds FAISS indexes over the item table
before the swap (``settings.index == "faiss"``, the default), and recommendations are
``index.search(user_vector, k + len(history), allowed=catalog filters)`` with the
history dropped from the answer (no per-request mask over the whole catalog); similar
items search the normalized table with the item's own vector (cosine), the same way
leaving out the item itself. The baselines, and every model with
``SHOPFORMER_INDEX=exact``, score the whole catalog (:func:`rank_exact`).

Catalog view: the catalog columns that filters and answers need (availability, price,
categories, titles), aligned to the model's item indexes. Built when a run is loaded,
kept ``cache_ttl_s`` seconds, dropped when this service upserts products; one thread
rebuilds it at a time (others wait for it, or, for titles, read them from the store).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from shopformer.artifact import Run, load_run, run_version  # noqa: F401 - run_version: re-exported
from shopformer.dataset import DEFAULT_EVENT_TYPES
from shopformer.feedback.experiments import Experiment
from shopformer.rank.rules import Audience, RulesConfig
from shopformer.features.sequences import Sequences, encode_history
from shopformer.privacy.pseudonym import Pseudonymizer
from shopformer.retrieve.exact import mask_items, top_k
from shopformer.store import EventStore, schema
from shopformer.store.served import publish_run
from shopformer.store.experiments import running_state

from .new_products import TextEncoders, places_new_products, with_products
from .new_visitors import NewVisitorConfig, RecentPopularity
from .retrieval import (
    VectorIndexes,
    build_vector_indexes,
    is_vector_model,
    search_excluding,
    search_one,
    user_vector,
)
from . import reranking
from .reranking import NewProducts, Reranking
from .catalog_view import VIEW_COLUMNS, CatalogView, read_view, refresh_view  # noqa: F401 - re-exported
from .rules import RuleBook, RuleStep
from .schemas import Filters
from .settings import ServeSettings
from .shared_state import SharedState

log = logging.getLogger("shopformer.serve")

#: serving-state entry naming the run every process serves: {"folder", "version"}
SERVED_RUN = schema.SERVED_RUN


class NoModelError(RuntimeError):
    """No run is loaded (answered with 503)."""


class UnknownItemError(KeyError):
    """An item the model does not know (answered with 404)."""


@dataclass(frozen=True)
class Served:
    """One loaded run; never mutated after it is published."""

    run: Run
    version: str
    loaded_at: datetime
    #: indexes over the item table (dot-product models with index="faiss"), else None
    vectors: VectorIndexes | None = None

    @property
    def retrieval(self) -> str:
        """How candidates are found: "exact" (dense scoring) or the FAISS kind built."""
        return "exact" if self.vectors is None else f"faiss-{self.vectors.kind}"

    @property
    def name(self) -> str:
        return str(self.run.info.get("model", self.run.model.name))

    @property
    def n_items(self) -> int:
        return len(self.run.items)

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self.run.data_config.event_types or DEFAULT_EVENT_TYPES)


@dataclass(frozen=True)
class History:
    """One user's encoded history (a one-row :class:`Sequences`)."""

    version: str
    sequences: Sequences
    made: float  # time.monotonic()
    position: int = 0  # the user's newest stored event when read (with settings.cache_check)
    #: events of the window whose type the model does not read, counted by type
    ignored_types: dict[str, int] = field(default_factory=dict, compare=False)
    #: the model's user vector for ``sequences``, once computed: it depends only on the
    #: history and the model (``version``), so a cached history serves it again
    _query: list = field(default_factory=list, repr=False, compare=False)

    @property
    def length(self) -> int:
        return self.sequences.n_interactions

    def query(self, model: object) -> np.ndarray:
        """The user vector of the dot-product ``model`` this history was encoded for."""
        if not self._query:
            self._query.append(user_vector(model, self.sequences))
        return self._query[0]


@dataclass(frozen=True)
class Arms:
    """A running experiment and the loaded run of each of its variants."""

    experiment: Experiment
    served: dict[str, Served]
    state: str  # the store's serving_state value this was loaded from


@dataclass
class Ranked:
    item_ids: list[str]
    scores: list[float]
    #: the model's item indexes of ``item_ids`` (for lookups in the catalog view)
    idx: np.ndarray | None = None
    #: "history" (personalised), "popularity" or "trending" (no usable history)
    strategy: str = "history"
    #: (1, D) the user vector the answer was searched with (vector retrieval), and the
    #: history it is the vector of: the explanations reuse it instead of computing it again
    query: np.ndarray | None = None
    query_history: Sequences | None = None
    #: a user's answer: events of the history window whose type the model does not read
    ignored_types: dict[str, int] = field(default_factory=dict)
    #: what the business rules did (:class:`shopformer.rank.rules.Move`), answer order
    rules: list = field(default_factory=list)
    #: what diversity / new-item slots moved (:class:`shopformer.rank.diversity.Shift`)
    reranked: list = field(default_factory=list)


def _check_pseudonymous(run: Run, pseudonyms: Pseudonymizer) -> None:
    """Refuse a run trained on raw ids on a pseudonymous server: its user vocabulary
    (users.json) would hold raw ids and match no customer the server names."""
    bad = pseudonyms.foreign(run.users.ids)
    if bad:
        raise ValueError(
            f"{run.folder} was trained on raw customer ids (or another key's pseudonyms): {bad} of its first "
            f"{min(len(run.users), 1000)} users are not pseudonyms of SHOPFORMER_PSEUDONYM_KEY; train it from "
            "pseudonymous data (`shopformer ingest --pseudonymize`, or a snapshot of this store)")


def rank_exact(scores: np.ndarray, exclude: Sequences | None, allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of a (1, n_items + 1) score row: padding, ``exclude`` items and items
    outside ``allowed`` are never returned. The retrieval step of serving for models
    that are not dot-product models, and for every model with ``SHOPFORMER_INDEX=exact``
    (the others search :attr:`Served.vectors`)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[np.isnan(scores)] = -np.inf
    mask_items(scores, exclude)
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    idx, top = top_k(scores, k)
    keep = np.isfinite(top[0])
    return idx[0][keep], top[0][keep]


class RecommendationService:
    """Owns the served run, the history cache and the catalog view."""

    def __init__(self, settings: ServeSettings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self._served: Served | None = None  # swapped atomically by reload()
        self._reload_lock = threading.Lock()  # serializes reloads only, never reads
        self._arms: Arms | None = None  # the running experiment's runs, swapped whole
        self._cache: OrderedDict[str, History] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._invalidations = 0  # bumped on every user invalidation (see _history)
        self._erasure_id = store.last_erasure_id()  # the last erasure receipt this cache accounts for
        self._purge_id = store.last_purge_id()  # the last retention purge this cache accounts for
        # one view per served version: an experiment serves two runs side by side
        self._catalogs: dict[str, CatalogView] = {}
        self._catalog_generation = 0
        self._catalog_build = threading.Lock()  # one catalog read at a time
        self._catalog_refreshing = False  # a background rebuild is under way
        self.cache_hits = 0
        self.cache_misses = 0
        self._text_encoders = TextEncoders()  # for new products of text-fused models
        #: a SearchService: search events join histories as views of their top product
        self.search = None
        #: the channel to the other replicas (serve/shared_state.py); the lifespan sets it
        self.shared: SharedState = SharedState()
        #: the stored business rules, applied to every answer (serve/rules.py)
        self.rules = RuleBook(RulesConfig(), store, settings.cache_ttl_s)
        #: diversity and new-product slots (serve/reranking.py): the server's default, and
        #: the store's new products with their click-through
        self.reranking = Reranking(exposure=settings.new_items)
        self.reranker_products = NewProducts(store, settings.cache_ttl_s)
        self.new_visitors = RecentPopularity(NewVisitorConfig(
            settings.new_visitors, settings.new_visitor_days, settings.trending_half_life_days, settings.cache_ttl_s,
        ), store)

    # -- model ----------------------------------------------------------------------
    @property
    def served(self) -> Served | None:
        return self._served

    def require(self) -> Served:
        served = self._served
        if served is None:
            raise NoModelError(
                "no model is loaded: start the server with SHOPFORMER_RUN=<run folder> "
                "or POST /v1/admin/reload {\"run\": \"<run folder>\"}"
            )
        return served

    def reload(self, folder: Path | None = None, publish: bool = False) -> tuple[Served, Served | None]:
        """Load ``folder`` (default: the run served now, else ``settings.run``) fully,
        score one empty history to prove it works, then swap it in. On any error the
        previous model keeps serving and the error propagates. ``publish`` also records
        it in the store as the run to serve, which every process follows (:meth:`sync`)."""
        served, previous = self._load(folder)
        if publish:
            # erasure receipts of users this run was not trained on are now complete
            done = publish_run(self.store, served.run.folder, served.version, served.run.users.ids)
            if done:
                log.info("erasure receipts %s complete: %s was trained without those users", done, served.version)
            self.shared.publish_reload(served.version)
        return served, previous

    def sync(self) -> bool:
        """Serve the run the store names (see :meth:`reload`) if it is not the one served
        now; True when a load happened. Called every ``settings.sync_s`` seconds."""
        raw = self.store.get_state(SERVED_RUN)
        if raw is None:
            return False
        wanted = json.loads(raw)
        served = self._served
        if served is not None and served.version.split("+", 1)[0] == wanted["version"]:
            return False
        self._load(Path(wanted["folder"]))
        return True

    def _load(self, folder: Path | None) -> tuple[Served, Served | None]:
        with self._reload_lock:
            previous = self._served
            if folder is None:
                folder = previous.run.folder if previous is not None else self.settings.run
            if folder is None:
                raise FileNotFoundError("no run folder given and none is configured (SHOPFORMER_RUN)")
            served = self._prepare(Path(folder))
            self._served = served  # the swap: one attribute assignment
            return served, previous

    def _prepare(self, folder: Path) -> Served:
        """Load and warm ``folder`` completely (nothing is swapped in)."""
        if not (folder / "run.json").is_file():
            raise FileNotFoundError(f"{folder} is not a trained run folder (no run.json)")
        version = run_version(folder)
        run = load_run(folder)
        if self.settings.pseudonyms is not None:
            _check_pseudonymous(run, Pseudonymizer(self.settings.pseudonyms))
        empty = Sequences(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64))
        warm = run.model.score(empty)
        if warm.shape != (1, len(run.items) + 1):
            raise ValueError(
                f"{folder}: model scores have shape {warm.shape}, expected (1, {len(run.items) + 1}) "
                "for its item vocabulary"
            )
        vectors = None
        if self.settings.index == "faiss" and is_vector_model(run.model):
            vectors = build_vector_indexes(run.model, run_folder=folder)  # before the swap; prebuilt if there
            search_one(vectors.users, user_vector(run.model, empty), 1, None)  # proves it answers
        served = Served(run=run, version=version, loaded_at=datetime.now(timezone.utc), vectors=vectors)
        if self.settings.cache_ttl_s > 0:
            try:  # the catalog view too, so that first requests do not wait for it
                self._catalog_view(served)
            except Exception as exc:  # noqa: BLE001 - built on first use instead
                log.warning("catalog view not built at load (%s: %s)", type(exc).__name__, exc)
        if places_new_products(run.model):  # catalog products the model never saw
            served = with_products(served, self.store.products(), self._text_encoders) or served
        return served

    # -- experiments ----------------------------------------------------------------
    def _arm_runs(self) -> tuple[Served, ...]:
        arms = self._arms
        return tuple(arms.served.values()) if arms is not None else ()

    @property
    def experiment(self) -> Experiment | None:
        arms = self._arms
        return arms.experiment if arms is not None else None

    def for_user(self, user_id: str | None) -> tuple[Served, str | None, str | None]:
        """(the run that answers ``user_id``, experiment name, variant name): the user's
        variant's run while an experiment runs, else the served run (also for answers with
        no user: anonymous sessions and similar items are outside experiments)."""
        arms = self._arms
        if arms is None or not user_id:
            return self.require(), None, None
        variant = arms.experiment.assign(user_id)
        return arms.served[variant.name], arms.experiment.name, variant.name

    def sync_experiment(self) -> bool:
        """Load the running experiment's runs (or drop them when it stopped) if the store
        names another state than the one this process serves; True when something changed.
        A variant whose run fails to load leaves the previous state serving and raises."""
        state = running_state(self.store)
        arms = self._arms
        if (arms.state if arms is not None else "") == state:
            return False
        experiment = Experiment.from_state(state)  # the value just read: no second store read
        if experiment is None:
            self._arms = None
            log.info("experiment %s stopped: every customer gets %s", arms.experiment.name if arms else "-",
                     self._served.version if self._served else "no model")
            return True
        loaded: dict[str, Served] = {}
        for v in experiment.variants:
            current = self._served
            if current is not None and current.version.split("+", 1)[0] == v.version:
                loaded[v.name] = current
            else:
                loaded[v.name] = self._prepare(v.run)
        self._arms = Arms(experiment, loaded, state)  # one assignment: requests see all arms or none
        log.info("experiment %s: %s", experiment.name,
                 ", ".join(f"{v.name}={loaded[v.name].version} ({v.share:.0%})" for v in experiment.variants))
        return True

    def place_new_products(self, item_ids: list[str]) -> int:
        """Products just upserted that the served content model does not know join it
        now (the model, its vocabulary and its indexes; one atomic swap). Returns how
        many joined; 0 for models trained without product content."""
        with self._reload_lock:
            served = self._served
            if served is None or not places_new_products(served.run.model):
                return 0
            grown = with_products(served, self.store.products(item_ids), self._text_encoders)
            if grown is None:
                return 0
            self._served = grown
            return len(grown.run.items) - len(served.run.items)

    # -- histories ------------------------------------------------------------------
    def invalidate_users(self, user_ids: list[str] | set[str], publish: bool = True) -> None:
        """Drop these users' cached histories; ``publish``: this process stored their
        events, so the other replicas drop theirs too (a notice received: False)."""
        with self._cache_lock:
            self._invalidations += 1
            for u in user_ids:
                self._cache.pop(u, None)
        if publish:
            self.shared.publish_users(user_ids)

    def invalidate_all(self) -> None:
        """Empty the history cache (the Redis channel broke: notices may have been missed)."""
        with self._cache_lock:
            self._invalidations += 1
            self._cache.clear()

    def forget_cached(self, user_id: str, receipt_id: int) -> None:
        """This process just erased ``user_id`` (receipt ``receipt_id``): drop their cached
        history. When no other erasure came in between, the sync thread need not empty
        the whole cache for this one."""
        with self._cache_lock:
            self._invalidations += 1
            self._cache.pop(user_id, None)
            if receipt_id == self._erasure_id + 1:
                self._erasure_id = receipt_id
        self.shared.publish_users([user_id])

    def sync_erasures(self, latest: int) -> bool:
        """``latest``: the store's newest erasure receipt. If another process erased a user
        since the last one seen, empty the history cache (the receipt names the user only
        by hash; erasures are rare). True when the cache was emptied."""
        with self._cache_lock:
            if latest <= self._erasure_id:
                return False
            self._erasure_id = latest
            self._invalidations += 1
            self._cache.clear()
            return True

    def sync_purges(self, latest: int) -> bool:
        """``latest``: the store's newest retention purge that deleted events. If it is new
        here, empty the history cache (cached histories may hold purged events; purges are
        periodic, and entries live ``cache_ttl_s`` at most anyway). True when emptied."""
        with self._cache_lock:
            if latest <= self._purge_id:
                return False
            self._purge_id = latest
            self._invalidations += 1
            self._cache.clear()
            return True

    def invalidate_catalog(self, publish: bool = True) -> None:
        """Rebuild the catalog view on next use; ``publish``: this process changed the
        catalog, so the other replicas do the same (a notice or the store follower: False)."""
        self.rules.forget_facts()
        self.reranker_products.forget()  # a product's created_at / tags may have changed
        with self._cache_lock:
            self._catalog_generation += 1
            # stale, not dropped: the next use applies the change log to them (cheap)
            # instead of reading the whole catalog again
            self._catalogs = {k: replace(v, made=-math.inf) for k, v in self._catalogs.items()}
        if publish:
            self.shared.publish_catalog()

    def _encode(self, served: Served, rows: list) -> Sequences:
        return encode_history(rows, served.run.items, served.event_types, served.run.data_config.dedupe_consecutive)

    def history(self, served: Served, user_id: str) -> History:
        """The user's encoded latest history, from the cache when fresh."""
        ttl = self.settings.cache_ttl_s
        now = time.monotonic()
        use_cache = ttl > 0 and self.settings.cache_size > 0
        # Read before the history: an event stored in between makes the entry look
        # stale (read again next time), never fresh.
        position = self.store.latest_position(user_id) if use_cache and self.settings.cache_check else 0
        if use_cache:
            with self._cache_lock:
                hit = self._cache.get(user_id)
                if (hit is not None and hit.version == served.version and now - hit.made < ttl
                        and hit.position == position):
                    self._cache.move_to_end(user_id)
                    self.cache_hits += 1
                    return hit
                self.cache_misses += 1
                seen = self._invalidations
        search = self.search
        if search is not None and search.ready:
            raw = self.store.user_history(user_id, limit=self.settings.history_limit, queries=True)
            rows = [(search.top_item(r[3]), "view", r[2]) if r[1] == "search" else r[:3] for r in raw]
        else:
            rows = raw = self.store.user_history(user_id, limit=self.settings.history_limit)
        read = set(served.event_types)
        ignored = Counter(r[1] for r, used in zip(raw, rows) if used[1] not in read)
        hist = History(served.version, self._encode(served, rows), now, position, dict(ignored))
        if use_cache:
            with self._cache_lock:
                # An event posted while we read could be missing from ``events``: keep
                # the result only if no invalidation happened meanwhile.
                if self._invalidations == seen:
                    self._cache[user_id] = hist
                    self._cache.move_to_end(user_id)
                    while len(self._cache) > self.settings.cache_size:
                        self._cache.popitem(last=False)
        return hist

    # -- catalog filters ------------------------------------------------------------
    def _fresh_view(self, served: Served) -> tuple[CatalogView | None, int]:
        """(the cached view if it is current for ``served``, else None; generation)."""
        with self._cache_lock:
            view, generation = self._catalogs.get(served.version), self._catalog_generation
        if (
            view is not None
            and view.version == served.version
            and time.monotonic() - view.made < self.settings.cache_ttl_s
        ):
            return view, generation
        return None, generation

    def _catalog_view(self, served: Served) -> CatalogView:
        """The current catalog view, built now if needed (by one thread at a time: the
        others wait for it rather than each reading the whole catalog)."""
        view, _ = self._fresh_view(served)
        if view is not None:
            return view
        with self._catalog_build:
            view, generation = self._fresh_view(served)  # built while we waited?
            if view is not None:
                return view
            return self._build_view(served, generation)

    def _catalog_view_nowait(self, served: Served) -> CatalogView | None:
        """The current catalog view, or None while it is (re)built in the background."""
        view, _ = self._fresh_view(served)
        if view is not None:
            return view
        with self._cache_lock:
            if self._catalog_refreshing:
                return None
            self._catalog_refreshing = True

        def refresh() -> None:
            try:
                self._catalog_view(served)
            except Exception:  # noqa: BLE001 - the next request tries again
                log.exception("catalog view refresh failed")
            finally:
                with self._cache_lock:
                    self._catalog_refreshing = False

        threading.Thread(target=refresh, name="shopformer-catalog-view", daemon=True).start()
        return None

    def _build_view(self, served: Served, generation: int) -> CatalogView:
        """A current view: the last one with the catalog writes since applied, else the
        whole catalog read (see :mod:`.catalog_view`)."""
        now = time.monotonic()
        with self._cache_lock:
            last = self._catalogs.get(served.version)
        view = None
        if last is not None and last.version == served.version:
            view = refresh_view(self.store, served.run.items, last, now)
        if view is None:
            view = read_view(self.store, served.run.items, served.version, now)
        with self._cache_lock:
            if self._catalog_generation == generation:
                live = {x.version for x in (self._served, *self._arm_runs()) if x is not None}
                self._catalogs = {k: c for k, c in self._catalogs.items() if k in live}
                self._catalogs[served.version] = view
        return view

    def allowed(self, served: Served, filters: Filters | None) -> np.ndarray | None:
        """(n_items + 1,) bool mask of candidates passing ``filters``; None = all."""
        if filters is None or not filters.active:
            return None
        view = self._catalog_view(served)
        mask = np.ones(served.n_items + 1, dtype=bool)
        if filters.available_only:
            mask &= view.available
        if filters.category is not None:
            hit = np.zeros_like(mask)
            hit[view.categories.filter(pl.col("category") == filters.category)["idx"].to_numpy()] = True
            mask &= hit
        with np.errstate(invalid="ignore"):
            if filters.min_price is not None:
                mask &= view.price >= filters.min_price
            if filters.max_price is not None:
                mask &= view.price <= filters.max_price
        return mask

    # -- answers --------------------------------------------------------------------
    def _ranked(self, served: Served, idx: np.ndarray, scores: np.ndarray, strategy: str = "history",
                query: np.ndarray | None = None, seq: Sequences | None = None) -> Ranked:
        return Ranked(served.run.items.decode(idx), [round(float(s), 6) for s in scores], np.asarray(idx), strategy,
                      query, seq)

    def recommend_user(self, served: Served, user_id: str, k: int, exclude_history: bool, filters: Filters | None,
                       options: Reranking | None = None) -> tuple[Ranked, int]:
        """``options``: diversity / new-item slots (None: the server's default)."""
        hist = self.history(served, user_id)
        query = hist.query(served.run.model) if served.vectors is not None else None
        step = self.rules.step(Audience(user_id, hist.length > 0))
        options = self.reranking if options is None else options
        fetch = k if step is None else step.fetch(k, served.n_items)
        if options.active:
            fetch = max(fetch, options.fetch(k, served.n_items))
        ranked = self._recommend(served, hist.sequences, fetch, exclude_history, filters, query)
        if options.active:
            ranked = reranking.apply(self, options, served, ranked, k, hist.sequences, exclude_history, filters, step)
        elif step is not None:
            ranked = self._apply_rules(step, served, ranked, k, hist.sequences if exclude_history else None, filters)
        ranked.ignored_types = hist.ignored_types
        return ranked, hist.length

    def recommend_items(self, served: Served, item_ids: list[str], k: int, exclude_history: bool, filters: Filters | None,
                        options: Reranking | None = None) -> tuple[Ranked, int, list[str]]:
        """Recommendations for an anonymous session (item ids, oldest first)."""
        idx = served.run.items.encode(item_ids) if item_ids else np.zeros(0, dtype=np.int64)
        ignored = [i for i, x in zip(item_ids, idx) if x == 0]
        seq = Sequences(np.array([0, int((idx > 0).sum())]), idx[idx > 0])
        step = self.rules.step(Audience(None, seq.n_interactions > 0))
        options = self.reranking if options is None else options
        if options.active:
            fetch = max(k if step is None else step.fetch(k, served.n_items), options.fetch(k, served.n_items))
            ranked = self._recommend(served, seq, fetch, exclude_history, filters)
            ranked = reranking.apply(self, options, served, ranked, k, seq, exclude_history, filters, step)
            return ranked, seq.n_interactions, ignored
        if step is None:
            return self._recommend(served, seq, k, exclude_history, filters), seq.n_interactions, ignored
        ranked = self._recommend(served, seq, step.fetch(k, served.n_items), exclude_history, filters)
        ranked = self._apply_rules(step, served, ranked, k, seq if exclude_history else None, filters)
        return ranked, seq.n_interactions, ignored

    def _apply_rules(self, step: RuleStep, served: Served, ranked: Ranked, k: int, history: Sequences | None,
                     filters: Filters | None, item: int | None = None) -> Ranked:
        """``ranked`` (more than ``k`` candidates) through the business rules. A pinned
        item the model did not propose is inserted only where the request would have
        allowed it: known to the model, not in the excluded history, passing the
        filters, not the item a similar-items answer is about."""
        items = served.run.items
        allowed: list[np.ndarray | None] = []  # computed once, only if a pin needs it
        banned = set(history.items.tolist()) if history is not None and history.n_interactions else set()
        if item is not None:
            banned.add(item)

        def insertable(item_id: str) -> bool:
            if item_id not in items:
                return False
            index = items.index(item_id)
            if not allowed:
                allowed.append(self.allowed(served, filters))
            return index not in banned and (allowed[0] is None or bool(allowed[0][index]))

        out = step.apply(ranked.item_ids, ranked.scores, k, insertable)
        idx = items.encode(out.item_ids) if out.item_ids else np.zeros(0, dtype=np.int64)
        return replace(ranked, item_ids=out.item_ids, scores=[round(float(x), 6) for x in out.scores],
                       idx=np.asarray(idx), rules=out.moves)

    def _recommend(self, served: Served, seq: Sequences, k: int, exclude_history: bool, filters: Filters | None,
                   query: np.ndarray | None = None) -> Ranked:
        """``query``: the user vector of ``seq`` when the caller has it (a cached history)."""
        allowed = self.allowed(served, filters)
        strategy = "history" if seq.n_interactions else "popularity"  # the model's empty-history scores
        if not seq.n_interactions:  # a new visitor: the store's recent counts, if so configured
            recent = self.new_visitors.scores(served.version, served.run.items, served.event_types)
            if recent is not None:
                idx, top = rank_exact(recent[None], None, allowed, k)
                return self._ranked(served, idx, top, self.new_visitors.config.strategy)
        repeats = served.run.repeats
        if repeats is not None and not exclude_history and seq.n_interactions:
            # past items compete with the rest through the learned repeat mixture; its
            # softmax needs every item's score, so this path scores the whole catalog
            idx, top = rank_exact(repeats.score(seq), None, allowed, k)
            return self._ranked(served, idx, top, strategy)
        if served.vectors is not None:
            query = user_vector(served.run.model, seq) if query is None else query
            if np.isfinite(query).all():
                exclude = seq.items if exclude_history and seq.n_interactions else None
                idx, top = search_excluding(served.vectors.users, query, k, allowed, exclude)
                return self._ranked(served, idx, top, strategy, query, seq)
        scores = served.run.model.score(seq)
        idx, top = rank_exact(scores, seq if exclude_history else None, allowed, k)
        return self._ranked(served, idx, top, strategy)

    def similar(self, served: Served, item_id: str, k: int, filters: Filters | None) -> Ranked:
        if item_id not in served.run.items:
            raise UnknownItemError(item_id)
        q = np.array([served.run.items.index(item_id)])
        step = self.rules.step(Audience(None, False))  # no customer: an anonymous audience
        if step is not None:
            ranked = self._similar(served, q, step.fetch(k, served.n_items), filters)
            return self._apply_rules(step, served, ranked, k, None, filters, int(q[0]))
        return self._similar(served, q, k, filters)

    def _similar(self, served: Served, q: np.ndarray, k: int, filters: Filters | None) -> Ranked:
        allowed = self.allowed(served, filters)
        if served.vectors is not None:  # never the item itself
            idx, scores = search_excluding(served.vectors.similar, self._unit_vector(served, int(q[0])), k, allowed, q)
            return self._ranked(served, idx, scores)
        # With filters, rank every item so that k survivors can be found.
        fetch = k if allowed is None else served.n_items
        idx, scores = served.run.model.similar_items(q, fetch)
        idx, scores = np.asarray(idx[0]), np.asarray(scores[0], dtype=np.float64)
        keep = np.isfinite(scores) & (idx > 0) & (idx != q[0])
        if allowed is not None:
            keep &= allowed[idx]
        idx, scores = idx[keep][:k], scores[keep][:k]
        return self._ranked(served, idx, scores)

    @staticmethod
    def _unit_vector(served: Served, index: int) -> np.ndarray:
        """The item's normalized output embedding, as the similar index holds it."""
        unit = served.vectors.unit if served.vectors is not None else None
        if unit is not None:
            return unit[index : index + 1]
        import torch

        with torch.no_grad():
            row = served.run.model.similarity_table()[index : index + 1].detach().float().cpu()
            return torch.nn.functional.normalize(row, dim=-1).numpy()

    def titles(self, item_ids: list[str], served: Served | None = None, idx: np.ndarray | None = None) -> dict[str, str | None]:
        """Catalog titles of ``item_ids``. With ``served`` and the ids' model indexes
        ``idx``, from the catalog view when it is current (else from the store, while
        the view is rebuilt in the background)."""
        if not item_ids:
            return {}
        if (
            served is not None and idx is not None and self.settings.cache_ttl_s > 0
            and len(idx) == len(item_ids) and (np.asarray(idx) > 0).all()
        ):
            view = self._catalog_view_nowait(served)
            if view is not None and view.titles is not None:
                return dict(zip(item_ids, view.titles.gather(np.asarray(idx)).to_list()))
        df = self.store.products(item_ids).select("item_id", "title")
        return dict(df.iter_rows())
