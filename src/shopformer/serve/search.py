"""SearchService: the store's catalog as a :class:`~shopformer.search.Searcher`.

Built in a background thread when the API starts (search routes answer 503 with
``Retry-After`` until it is ready), from the store's catalog, with the product text
vectors cached in the search folder (so a restart encodes only new or changed products)
and the store's past search queries for autocomplete. A catalog upsert or delete through
this process reaches the searcher before the request returns; upserts that arrive while
the index is being built are applied when it is. Writes made through other processes
(workers, replicas) reach it within ``SHOPFORMER_SYNC_S`` seconds: the store logs every
catalog write in order, and :meth:`SearchService.sync` replays the new ones.

The search folder (``SHOPFORMER_SEARCH_DIR``) may hold ``search_config.json`` (a
:class:`~shopformer.search.SearchConfig` as JSON: fusion, field weights, synonyms file,
personalization weight) and ``reranker/`` (a trained :class:`~shopformer.search.rerank.
Reranker`), which the service uses when present.

Erasure (``DELETE /v1/users/{id}``): :meth:`SearchService.forget_queries` takes the
user's stored queries' counts back out of autocomplete in the answering process, and
drops them from the query -> top product cache; every other process learns of the
erasure from the store's receipts (:meth:`SearchService.sync_erasures`, on the sync
thread) and takes back whatever it had counted from stored search events that the store
no longer holds. Queries counted only in memory from answered searches
(``GET /v1/search``) name no user and stay. A retention purge that deleted search events
is reconciled the same way (:meth:`SearchService.sync_purges`).

Search events join the behaviour history: :meth:`SearchService.top_item` resolves a
query to the product it finds first (cached), and the recommendation service reads a
user's ``search`` event as a view of that product (see RecommendationService.history).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import replace
from pathlib import Path

from shopformer.search import SearchConfig, Searcher
from shopformer.store import EventStore

from .retrieval import _all_cpus, limit_faiss_threads
from .settings import ServeSettings

log = logging.getLogger("shopformer.serve")

CONFIG_FILE = "search_config.json"


class SearchNotReady(RuntimeError):
    """The index is still being built, or failed to build (answered with 503)."""


def search_dir(settings: ServeSettings) -> Path:
    """The configured search folder, else ``<db file>.search`` beside a SQLite store,
    else ``shopformer-search`` in the working directory."""
    if settings.search_dir is not None:
        return settings.search_dir
    url = settings.store_url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///"):] + ".search")
    return Path("shopformer-search")


def search_config(settings: ServeSettings, folder: Path) -> SearchConfig:
    """``search_config.json`` from the folder when present (else the defaults), with the
    text-vector cache in the folder and the settings' overrides."""
    path = folder / CONFIG_FILE
    config = SearchConfig.from_dict(json.loads(path.read_text())) if path.is_file() else SearchConfig()
    encoder = replace(config.semantic.encoder, cache_dir=folder / "text-cache")
    config = replace(config, semantic=replace(config.semantic, encoder=encoder), use_semantic=settings.search_semantic
                     and config.use_semantic)
    if settings.search_personal_weight is not None:
        config = replace(config, personal_weight=settings.search_personal_weight)
    return config


def quiet_gc() -> None:
    """Keep Python's cyclic garbage collector out of the search path: the index's millions
    of long-lived objects (the spelling dictionary, the catalog) move to the permanent
    generation (``gc.freeze``), and young collections run every 50,000 allocations instead
    of 700. Measured in one process on Home Depot's 54,667 products: a full collection
    paused searches for 420 ms (one in 1,500 queries, p99 22 ms, max 433 ms); with this,
    p99 16.5 ms and max 23 ms. Once per process (one API per process; what a frozen object
    keeps alive is never collected, so a process that starts several APIs, like the test
    suite, freezes only the first)."""
    import gc

    global _gc_quieted
    if _gc_quieted:
        return
    _gc_quieted = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


_gc_quieted = False


class SearchService:
    def __init__(self, settings: ServeSettings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.folder = search_dir(settings)
        self._searcher: Searcher | None = None
        self._error: str | None = None
        self._lock = threading.Lock()  # guards _searcher/_pending while building
        self._pending: list[tuple[str, list[str]]] = []  # ("upsert" | "delete", item ids) while building
        self._top: OrderedDict[str, str | None] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._seq = 0  # the last catalog change (store.catalog_changes) this index has applied
        #: what autocomplete counted from the store (past search events at start-up, search
        #: events posted here since), by raw query text: what an erasure may take back
        self._from_store: Counter[str] = Counter()
        self._erasure_id = 0  # the last erasure receipt (store.last_erasure_id) accounted for
        self._purge_id = 0  # the last retention purge (store.last_purge_id) accounted for
        #: searches computing at once: one per CPU. More threads in a search only trade the
        #: GIL back and forth (measured: p50 53 ms at 44 req/s without this bound, 40 threads)
        self.slots = threading.BoundedSemaphore(max(1, _all_cpus()))

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._build, name="shopformer-search-build", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._searcher is not None

    def _lexical(self, config: SearchConfig):  # noqa: ANN202 - a LexicalIndex
        if self.settings.search_lexical == "postgres":
            from shopformer.search.postgres_index import PostgresLexicalIndex

            return PostgresLexicalIndex(config.lexical, url=self.store.config.url, name="catalog",
                                        schema=self.store.config.schema)
        from shopformer.search.tantivy_index import TantivyIndex

        return TantivyIndex(config.lexical)  # in a temporary folder: each process its own

    def _build(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            config = search_config(self.settings, self.folder)
            self._seq = self.store.catalog_seq()  # read first: later writes are replayed by sync()
            products = self.store.products()
            log.info("search: indexing %d products (vectors cached in %s)", products.height, self.folder)
            searcher = Searcher.build(products, config, lexical=self._lexical(config))
            if (self.folder / "reranker").is_dir():
                from shopformer.search.features import warm_titles
                from shopformer.search.rerank import Reranker

                searcher.reranker = Reranker.load(self.folder / "reranker")
                warm_titles(searcher.catalog.norm_titles)  # no query pays for a cold title
            # past searches for autocomplete (a query's count capped at 1,000); erasures up to
            # here are already out of the counts read
            erased = self.store.last_erasure_id()
            past = {q: min(n, 1000) for q, n in self.store.query_counts(limit=100_000).items()}
            searcher.suggester.add_counts(past)
            with self._lock:
                self._from_store.update(past)
                self._erasure_id = max(self._erasure_id, erased)
            limit_faiss_threads()  # one thread per search: requests run side by side instead
            with self._lock:
                pending, self._pending = self._pending, []
                self._searcher = searcher
            for kind, ids in pending:
                self._apply(searcher, kind, ids)
            quiet_gc()
            log.info("search: ready (%d products, strategy %s)", len(searcher),
                     "hybrid" if searcher.semantic is not None else "lexical")
        except Exception as exc:  # noqa: BLE001 - reported by every search request
            log.exception("search index could not be built")
            self._error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._searcher is not None:
            self._searcher.close()

    # -- use --------------------------------------------------------------------------------
    def require(self) -> Searcher:
        s = self._searcher
        if s is None:
            if self._error:
                raise SearchNotReady(f"the search index failed to build: {self._error}")
            raise SearchNotReady("the search index is being built; retry in a few seconds")
        return s

    @property
    def ready(self) -> bool:
        return self._searcher is not None

    def _apply(self, searcher: Searcher, kind: str, ids: list[str]) -> None:
        if kind == "delete":
            searcher.delete(ids)
        else:
            found = self.store.products(ids)
            if found.height:
                searcher.upsert(found)
        with self._lock:
            self._top.clear()  # a query's best match may have changed

    def catalog_changed(self, kind: str, item_ids: list[str]) -> None:
        """Products were upserted or deleted in the store: searchable (or gone) on return,
        or when the index being built is ready."""
        with self._lock:
            searcher = self._searcher
            if searcher is None:
                self._pending.append((kind, list(item_ids)))
                return
        self._apply(searcher, kind, list(item_ids))

    def sync(self) -> int:
        """Apply the catalog writes stored since the last one applied (made by any
        process: the API's follower thread calls this every ``SHOPFORMER_SYNC_S``);
        returns how many products changed. Replaying this process's own writes is
        harmless: an upsert replaces, a delete of a missing product does nothing."""
        searcher = self._searcher
        if searcher is None:
            return 0
        changes = self.store.catalog_changes(self._seq)
        if not changes:
            return 0
        last: dict[str, str] = {}
        for _, item, kind in changes:
            last.pop(item, None)
            last[item] = kind  # the latest write of a product wins
        deletes = [i for i, k in last.items() if k == "delete"]
        upserts = [i for i, k in last.items() if k == "upsert"]
        if deletes:
            self._apply(searcher, "delete", deletes)
        if upserts:
            self._apply(searcher, "upsert", upserts)
        self._seq = changes[-1][0]
        return len(last)

    def record_queries(self, queries: list[str]) -> None:
        """Search events just stored: their queries count for autocomplete."""
        s = self._searcher
        if s is not None and queries:
            s.record_queries(queries)
            with self._lock:
                self._from_store.update(queries)

    def forget_queries(self, counts: dict[str, int]) -> int:
        """An erased user's queries (text -> how often they searched it, read from the
        store before the deletion): their counts leave autocomplete and the queries leave
        the top-product cache. Returns how many distinct queries were taken back."""
        s = self._searcher
        with self._lock:
            for q in counts:
                self._top.pop(q, None)
            if s is None:
                return 0
            taken = {q: min(n, self._from_store.get(q, 0)) for q, n in counts.items()}
            taken = {q: n for q, n in taken.items() if n > 0}
            self._from_store.subtract(taken)
            self._from_store += Counter()  # drops the zeros
        s.suggester.subtract(taken)
        return len(taken)

    def sync_erasures(self, latest: int) -> int:
        """``latest``: the store's newest erasure receipt. When it is newer than the last
        one accounted for here (another process erased someone), take back the counts
        this process took from stored search events the store no longer holds (one
        GROUP BY over the search events; erasures are rare). Returns the queries changed."""
        if self._searcher is None or latest <= self._erasure_id:
            return 0
        changed = self._reconcile()
        self._erasure_id = latest
        return changed

    def sync_purges(self, latest: int) -> int:
        """``latest``: the store's newest retention purge that deleted events. When it is new
        here, take back the counts of stored searches the purge deleted, as
        :meth:`sync_erasures` does for an erasure. Returns the queries changed."""
        if self._searcher is None or latest <= self._purge_id:
            return 0
        changed = self._reconcile()
        self._purge_id = latest
        return changed

    def _reconcile(self) -> int:
        """Take back what autocomplete counted from stored search events the store no longer
        holds (one GROUP BY over the search events)."""
        stored = self.store.query_counts()
        with self._lock:
            excess = {q: n - stored.get(q, 0) for q, n in self._from_store.items() if n > stored.get(q, 0)}
        return self.forget_queries(excess)

    def top_item(self, query: str) -> str | None:
        """The product a query finds first (None when nothing), cached: how a search
        event joins the history recommendations read."""
        s = self._searcher
        if s is None or not query:
            return None
        with self._lock:
            if query in self._top:
                self._top.move_to_end(query)
                return self._top[query]
        result = s.search(query, k=1, record=False)
        top = result.hits[0].item_id if result.hits else None
        with self._lock:
            self._top[query] = top
            while len(self._top) > 10_000:
                self._top.popitem(last=False)
        return top

