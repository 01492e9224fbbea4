"""Store contract: the same tests on SQLite (always) and PostgreSQL (when
SHOPFORMER_TEST_POSTGRES_URL is set, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import create_engine, text
from sqlalchemy.sql.dml import Insert

from shopformer.dataset import load_events, load_products
from shopformer.ingest import ingest_to_folder
from shopformer.store import EventStore, StoreConfig, StoreError, export_snapshot, import_folder
from shopformer.store.engine import normalize_url
from shopformer.types import EVENT_SCHEMA, PRODUCT_SCHEMA, conform

T0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
PG_URL = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL")


def ev(i: int, user: str = "u1", **kw) -> dict:
    row = {"event_id": f"e{i}", "user_id": user, "item_id": f"i{i % 7}", "event_type": "view",
           "timestamp": T0 + timedelta(minutes=i)}
    return {**row, **kw}


FULL_EVENTS = [
    {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0,
     "session_id": "s1", "query": None, "value": None, "context": '{"page": "home"}'},
    {"event_id": "e2", "user_id": "u1", "item_id": None, "event_type": "search",
     "timestamp": T0 + timedelta(seconds=1), "session_id": "s1", "query": "red shoes",
     "value": None, "context": '{"device": "phone", "ü": "ß"}'},
    {"event_id": "e3", "user_id": "u2", "item_id": "i2", "event_type": "purchase",
     "timestamp": T0 + timedelta(days=1, microseconds=7), "session_id": "s2", "query": None,
     "value": 3.5, "context": None},
]
FULL_PRODUCTS = [
    {"item_id": "i1", "title": "Red shoe", "description": "A shoe.\nRed.", "brand": "Acme",
     "categories": ["Shoes", "Sneakers"], "price": 59.99, "currency": "EUR",
     "attributes": '{"color": "red", "size": [40, 41]}', "image_uri": "https://x/i1.jpg",
     "created_at": T0, "available": True, "tags": ["new", "sale"]},
    {"item_id": "i2", "title": "Blue hat", "description": None, "brand": None,
     "categories": [], "price": 0.0, "currency": "USD", "attributes": None,
     "image_uri": None, "created_at": None, "available": False, "tags": None},
]


def frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, schema={k: schema[k] for k in rows[0]}), schema)


class StoreContract:
    """Mixin: subclasses provide the ``config`` fixture (a fresh, empty store)."""

    @pytest.fixture
    def store(self, config):
        s = EventStore(config)
        yield s
        s.close()

    def test_events_round_trip_every_field(self, store):
        res = store.add_events(frame(FULL_EVENTS, EVENT_SCHEMA))
        assert (res.inserted, res.duplicates, res.rejected) == (3, 0, {})
        got = store.events()
        assert got.schema == pl.Schema(EVENT_SCHEMA)
        assert got["position"].is_sorted() and got["position"].n_unique() == 3
        assert_frame_equal(got.drop("position"), frame(FULL_EVENTS, EVENT_SCHEMA).drop("position"))
        # the same rows given as dicts are the same events
        again = store.add_events(FULL_EVENTS)
        assert (again.inserted, again.duplicates) == (0, 3)
        assert store.count_events() == 3 and store.max_position() == got["position"].max()
        assert store.events(since_position=got["position"][1])["event_id"].to_list() == ["e3"]

    def test_products_round_trip_every_field(self, store):
        assert store.upsert_products(FULL_PRODUCTS) == 2
        want = frame(FULL_PRODUCTS, PRODUCT_SCHEMA)
        assert_frame_equal(store.products(), want)
        assert_frame_equal(store.products(["i2", "nope", "i1"]), want.reverse())
        assert store.get_product("i1") == want.row(0, named=True)
        assert store.get_product("nope") is None

    def test_repost_same_event_id_is_noop(self, store):
        assert store.add_events([ev(1)]).inserted == 1
        before = store.events()
        res = store.add_events([ev(1, item_id="other", event_type="purchase"), ev(2)])
        assert (res.inserted, res.duplicates) == (1, 1)
        after = store.events()
        assert_frame_equal(after.head(1), before)
        # no event_id: the store derives one from the content, so a re-post is a no-op too
        row = {"user_id": "u9", "item_id": "i9", "event_type": "click", "timestamp": "2024-01-01T00:00:00Z"}
        assert store.add_events([row]).inserted == 1
        assert store.add_events([{**row, "timestamp": datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))}]).duplicates == 1
        assert store.count_events() == 3

    def test_bad_rows_are_rejected_by_reason_rest_stored(self, store):
        rows = [ev(1), ev(2, user_id=None), ev(3, timestamp="not a time"),
                ev(4, event_type="teleport"), ev(5, item_id=None), ev(6), ev(6)]
        res = store.add_events(rows)
        assert res.rejected == {"missing_user_id": 1, "unknown_event_type": 1,
                                "missing_item_id": 1, "bad_timestamp": 1}
        assert (res.inserted, res.duplicates) == (2, 1)
        assert res.examples["bad_timestamp"] == [(3, "timestamp", "not a time")]
        assert sorted(store.events()["event_id"]) == ["e1", "e6"]
        assert store.add_events([]).inserted == 0

    def test_failed_batch_writes_nothing(self, config, monkeypatch):
        store = EventStore(dataclasses.replace(config, chunk_size=2))
        store.add_events([ev(0)])
        real = store._write

        @contextmanager
        def failing():
            with real() as conn:
                inserts = []
                execute = conn.execute

                def boom(stmt, *a, **k):
                    if isinstance(stmt, Insert):
                        inserts.append(stmt)
                        if len(inserts) == 2:
                            raise RuntimeError("simulated crash mid-batch")
                    return execute(stmt, *a, **k)

                monkeypatch.setattr(conn, "execute", boom)
                yield conn

        monkeypatch.setattr(store, "_write", failing)
        with pytest.raises(RuntimeError, match="mid-batch"):
            store.add_events([ev(i) for i in range(1, 6)])  # 3 chunks; the 2nd fails
        assert store.events()["event_id"].to_list() == ["e0"]
        store.close()

    def test_upsert_replaces_product_atomically(self, store):
        store.upsert_products(FULL_PRODUCTS)
        n = store.upsert_products([{"item_id": "i1", "title": "Old"}, {"item_id": "i1", "title": "New", "price": 10},
                                   {"item_id": "i3", "title": "Third"}])
        assert n == 2
        p = store.get_product("i1")
        assert (p["title"], p["price"], p["brand"], p["tags"]) == ("New", 10.0, None, None)
        before = store.products()
        with pytest.raises(StoreError, match="bad_price"):
            store.upsert_products([{"item_id": "i1", "title": "Changed"}, {"item_id": "i4", "price": -1}])
        assert_frame_equal(store.products(), before)

    def test_user_events_ordered_by_time_then_position(self, store):
        store.add_events([ev(1, timestamp=T0 + timedelta(hours=1)), ev(2, timestamp=T0)])
        store.add_events([ev(3, timestamp=T0), ev(4, timestamp=None), ev(5, user="u2")])
        store.add_events([ev(6, timestamp=T0 + timedelta(hours=1))])
        assert store.user_events("u1")["event_id"].to_list() == ["e4", "e2", "e3", "e1", "e6"]
        assert store.user_events("u1", limit=3)["event_id"].to_list() == ["e3", "e1", "e6"]
        assert store.user_events("nobody").height == 0

    def test_recent_item_events_reads_the_window_before_the_newest_event(self, store):
        store.add_events([
            ev(1, item_id="old", timestamp=T0 - timedelta(days=40)),
            ev(2, item_id="new", timestamp=T0 - timedelta(days=2)),
            ev(3, item_id="new", timestamp=T0, event_type="purchase"),
            ev(4, item_id="untimed", timestamp=None),
            ev(5, item_id=None, event_type="search", query="hat", timestamp=T0),
        ])
        recent = store.recent_item_events(30)
        assert sorted(recent["item_id"].to_list()) == ["new", "new", "untimed"]  # no item: left out
        assert sorted(store.recent_item_events(0)["item_id"].to_list()) == ["new", "new", "old", "untimed"]
        assert store.recent_item_events(30, ["purchase"])["item_id"].to_list() == ["new"]
        assert recent["timestamp"].null_count() == 1 and store.recent_item_events(30).height == 3

    def test_serving_state_and_latest_position(self, store):
        assert store.get_state("run") is None and store.latest_position("u1") == 0
        store.put_state("run", '{"folder": "a"}')
        store.put_state("run", '{"folder": "b"}')
        assert store.get_state("run") == '{"folder": "b"}'
        store.add_events([ev(1), ev(2, user="u2"), ev(3)])
        positions = store.events().filter(pl.col("user_id") == "u1")["position"].to_list()
        assert store.latest_position("u1") == max(positions) and store.latest_position("nobody") == 0

    def test_delete_products(self, store):
        store.upsert_products([{"item_id": "i1", "title": "One"}, {"item_id": "i2", "title": "Two"}])
        assert store.delete_products(["i1", "nope", "i1"]) == 1
        assert store.products()["item_id"].to_list() == ["i2"]
        assert store.delete_products([]) == 0 and store.count_products() == 1

    def test_catalog_writes_are_logged_in_order(self, store):
        assert store.catalog_seq() == 0 and store.catalog_changes(0) == []
        store.upsert_products([{"item_id": "i1", "title": "One"}, {"item_id": "i2", "title": "Two"}])
        seq = store.catalog_seq()
        store.delete_products(["i1"])
        store.upsert_products([{"item_id": "i2", "title": "Two again"}])
        changes = store.catalog_changes(0)
        assert [(i, k) for _, i, k in changes] == [("i1", "upsert"), ("i2", "upsert"), ("i1", "delete"), ("i2", "upsert")]
        assert [s for s, _, _ in changes] == sorted(s for s, _, _ in changes) and changes[1][0] == seq
        assert [(i, k) for _, i, k in store.catalog_changes(seq)] == [("i1", "delete"), ("i2", "upsert")]
        assert len(store.catalog_changes(0, limit=1)) == 1

    def test_query_counts_and_history_with_queries(self, store):
        store.add_events([{"user_id": "u1", "event_type": "search", "query": q, "timestamp": T0 + timedelta(minutes=i)}
                          for i, q in enumerate(["red mug", "tea", "red mug", "red mug", "tea", "kettle"])])
        store.add_events([ev(1, timestamp=T0 + timedelta(hours=1))])
        assert store.query_counts() == {"red mug": 3, "tea": 2, "kettle": 1}
        assert store.query_counts(limit=1) == {"red mug": 3}
        rows = store.user_history("u1", limit=2, queries=True)
        assert [(r[1], r[3]) for r in rows] == [("search", "kettle"), (rows[1][1], None)]
        assert len(store.user_history("u1")[0]) == 3

    def test_user_history_is_user_events_as_tuples(self, store):
        """The serving read: the same events in the same order, three fields each."""
        store.add_events([ev(1, timestamp=T0 + timedelta(hours=1)), ev(2, timestamp=T0)])
        store.add_events([ev(3, timestamp=T0), ev(4, timestamp=None), ev(5, user="u2")])
        for limit in (None, 3):
            frame = store.user_events("u1", limit=limit)
            rows = store.user_history("u1", limit=limit)
            assert [r[0] for r in rows] == frame["item_id"].to_list()
            assert [r[1] for r in rows] == frame["event_type"].to_list()
            stamps = [None if r[2] is None else r[2].replace(tzinfo=r[2].tzinfo or timezone.utc) for r in rows]
            assert stamps == frame["timestamp"].to_list()
        assert store.user_history("nobody") == []

    def test_events_survive_close_and_reopen(self, config):
        store = EventStore(config)
        store.add_events([ev(i) for i in range(5)])
        store.upsert_products(FULL_PRODUCTS)
        before = store.events()
        store.close()
        reopened = EventStore(config)
        assert_frame_equal(reopened.events(), before)
        assert reopened.count_products() == 2
        assert reopened.add_events([ev(5)]).inserted == 1
        assert reopened.max_position() > before["position"].max()
        reopened.close()

    def test_concurrent_writers_lose_nothing(self, store):
        errors: list[BaseException] = []
        inserted = []

        def writer(name: str) -> None:
            try:
                for b in range(8):
                    rows = [ev(1000 + b)] + [ev(i, event_id=f"{name}-{b}-{i}") for i in range(10)]
                    inserted.append(store.add_events(rows).inserted)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        got = store.events()
        assert got.height == sum(inserted) == 2 * 8 * 10 + 8
        assert got["event_id"].n_unique() == got.height and got["position"].n_unique() == got.height

    def test_queued_writers_share_one_commit_and_see_it_before_returning(self, config, store):
        """Writers queued behind a running transaction are written together in the next
        one (one commit), and each call returns only once its rows are committed."""
        transactions = []
        real = store._write

        @contextmanager
        def counting():
            transactions.append(1)
            with real() as conn:
                yield conn

        store._write = counting
        release = threading.Event()
        reader = EventStore(config)
        seen_after_return: dict[str, bool] = {}

        def slow(conn):
            release.wait(10)
            return "slow done"

        def post(i: int) -> None:
            res = store.add_events([ev(i, event_id=f"g{i}")])
            assert res.inserted == 1
            # durable before acknowledged: another connection sees it once we return
            seen_after_return[f"g{i}"] = f"g{i}" in reader.events()["event_id"].to_list()

        first = threading.Thread(target=store._run_write, args=(slow,))
        first.start()
        while len(transactions) < 1:
            threading.Event().wait(0.005)
        writers = [threading.Thread(target=post, args=(i,)) for i in range(5)]
        for t in writers:
            t.start()
        while len(store._queue) < 5:  # all five queued behind the slow transaction
            threading.Event().wait(0.005)
        release.set()
        first.join()
        for t in writers:
            t.join()
        reader.close()
        assert len(transactions) == 2  # the slow one, then one for all five posts
        assert seen_after_return == {f"g{i}": True for i in range(5)}
        assert store.count_events() == 5

    def test_a_failing_write_in_a_group_is_rolled_back_alone(self, store):
        release = threading.Event()
        errors: list[BaseException] = []

        def slow(conn):
            release.wait(10)

        def failing(conn):
            conn.execute(store._event_insert, ev(99, event_id="half"))
            raise RuntimeError("fails after writing a row")

        def run_failing() -> None:
            try:
                store._run_write(failing)
            except RuntimeError as e:
                errors.append(e)

        first = threading.Thread(target=store._run_write, args=(slow,))
        first.start()
        while not store._writing:
            threading.Event().wait(0.005)
        threads = [threading.Thread(target=lambda: store.add_events([ev(1)])), threading.Thread(target=run_failing)]
        for t in threads:
            t.start()
        while len(store._queue) < 2:  # both in the same group
            threading.Event().wait(0.005)
        release.set()
        first.join()
        for t in threads:
            t.join()
        assert len(errors) == 1
        assert store.events()["event_id"].to_list() == ["e1"]  # "half" was rolled back, e1 kept

    def test_export_snapshot_gives_the_same_events(self, store, tmp_path):
        store.add_events(FULL_EVENTS)
        store.upsert_products(FULL_PRODUCTS)
        assert export_snapshot(store, tmp_path / "snap") == (3, 2)
        assert_frame_equal(load_events(tmp_path / "snap"), store.events())
        assert_frame_equal(load_products(tmp_path / "snap"), store.products())

    def test_import_ingested_folder(self, store, tmp_path):
        src = tmp_path / "log.csv"
        src.write_text(
            "user_id,item_id,event_type,timestamp\n"
            "u1,i1,view,2024-05-01 10:00:00\nu1,i2,purchase,2024-05-01 10:05:00\n"
            "u2,i1,view,\nu2,i1,view,\nbad,,view,2024-05-01\n"
        )
        ingest_to_folder(tmp_path / "data", src)
        res = import_folder(store, tmp_path / "data")
        assert (res.events.inserted, res.products) == (4, 0)  # the repeated untimed row is kept
        again = import_folder(store, tmp_path / "data")
        assert (again.events.inserted, again.events.duplicates) == (0, 4)
        want = load_events(tmp_path / "data").drop("event_id", "position")
        assert_frame_equal(store.events().drop("event_id", "position"), want)


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def config(self, tmp_path):
        return StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}")

    def test_sqlite_runs_wal_with_full_sync(self, store):
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1

    def test_no_pre_ping_for_sqlite_unless_asked(self, config):
        with EventStore(config) as store:
            assert store._base_engine.pool._pre_ping is False
        with EventStore(dataclasses.replace(config, pool_pre_ping=True)) as store:
            assert store._base_engine.pool._pre_ping is True

    def test_config_defaults_and_urls(self):
        assert StoreConfig().url == "sqlite:///shopformer.db"
        assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
        with pytest.raises(StoreError, match="unsupported"):
            EventStore(StoreConfig(url="mysql://u@h/db"))


@pytest.mark.skipif(not PG_URL, reason="set SHOPFORMER_TEST_POSTGRES_URL (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test) to run the PostgreSQL store tests")
class TestPostgresStore(StoreContract):
    @pytest.fixture
    def config(self):
        schema = f"shopformer_test_{uuid.uuid4().hex[:12]}"
        yield StoreConfig(url=PG_URL, schema=schema, pool_size=2)
        engine = create_engine(normalize_url(PG_URL))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    def test_pre_ping_on_by_default(self, store):
        assert store._base_engine.pool._pre_ping is True
