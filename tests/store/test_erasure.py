"""Erasure in the store: the user's rows gone, their bytes gone from the SQLite file and
its WAL, other users intact, and the receipt (hashed id, counts, pending -> complete).
The PostgreSQL variant runs when SHOPFORMER_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import create_engine, text

from shopformer.store import ErasureConfig, EventStore, StoreConfig
from shopformer.store.engine import normalize_url
from shopformer.store.erasure import COMPLETE, PENDING, user_hash

PG_URL = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL")
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
USER = "zq-user-marker-777"
#: distinctive strings of the erased user's data: id, event ids, context, query
MARKERS = (USER, "zqevt-4242", "zq-secret-marker-123", "zq-query-marker-456")


def shop_events(n_others: int = 3000, n_user: int = 400, seed: int = 0) -> list[dict]:
    """Other customers' events interleaved with the user's (so they share pages, and the
    index pages split while both are written), the user's carrying the markers."""
    rng = random.Random(seed)
    rows = [{"event_id": f"o{i}", "user_id": f"other{i % 97}", "item_id": f"i{rng.randrange(300)}",
             "event_type": "view", "timestamp": T0 + timedelta(seconds=i), "context": json.dumps({"page": "home"})}
            for i in range(n_others)]
    for j in range(n_user):
        search = j % 4 == 0
        row = {"event_id": f"zqevt-4242-{j}", "user_id": USER, "event_type": "search" if search else "view",
               "item_id": None if search else f"i{rng.randrange(300)}", "timestamp": T0 + timedelta(seconds=j, milliseconds=1),
               "session_id": f"zq-session-{j}", "context": json.dumps({"note": "zq-secret-marker-123", "j": j})}
        if search:
            row["query"] = f"zq-query-marker-456 boots {j}"
        rows.insert(rng.randrange(len(rows) + 1), row)
    return rows


def file_bytes(db: Path) -> dict[str, bytes]:
    """The database file and its WAL / rollback journal, when present."""
    return {p.name: p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-journal")) if p.exists()}


def found(db: Path) -> dict[str, list[str]]:
    return {name: [m for m in MARKERS if m.encode() in data] for name, data in file_bytes(db).items()
            if any(m.encode() in data for m in MARKERS)}


def fill(store: EventStore) -> None:
    rows = shop_events()
    for i in range(0, len(rows), 250):  # many commits: many WAL frames holding the user's rows
        store.add_events(rows[i:i + 250])


def test_sqlite_bytes_of_the_user_are_gone_from_file_and_wal(tmp_path):
    db = tmp_path / "shop.db"
    store = EventStore(StoreConfig(f"sqlite:///{db}"))
    fill(store)
    others_before = store.user_events("other5")
    n_before = store.count_events()
    assert set(MARKERS) <= {m for ms in found(db).values() for m in ms}  # the markers are written where we look

    receipt = store.forget_user(USER, model_version="run-a", model_saw_user=True)
    assert receipt.removed == {"events": 400, "impressions": 0}
    assert receipt.event_types == {"search": 100, "view": 300}
    assert receipt.status == PENDING and receipt.user_id == USER and receipt.user_hash == user_hash(USER)
    assert receipt.storage["secure_delete"] is True and receipt.storage["wal_truncated"] is True
    # with the store still open (pooled connections) and after it is closed
    assert found(db) == {}
    store.close()
    assert found(db) == {}, "the erased user's bytes are still in the database files"
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0

    with EventStore(StoreConfig(f"sqlite:///{db}")) as again:  # the rest is intact and queryable
        assert again.count_events() == n_before - 400
        assert again.user_events(USER).height == 0
        assert_frame_equal(again.user_events("other5"), others_before)
        assert again.query_counts() == {}
        [stored] = again.erasures()
        assert stored.user_id is None and stored.user_hash == user_hash(USER)
        assert stored.removed == receipt.removed and stored.storage["wal_truncated"] is True


def test_without_secure_delete_the_bytes_would_stay(tmp_path):
    """The control that makes the test above mean something: a plain DELETE (pysqlite's
    default, secure_delete off) and the same checkpoint leave the markers in the file."""
    db = tmp_path / "plain.db"
    with EventStore(StoreConfig(f"sqlite:///{db}")) as store:
        fill(store)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA secure_delete = OFF")
    conn.execute("DELETE FROM events WHERE user_id = ?", (USER,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert USER.encode() in db.read_bytes() and b"zq-secret-marker-123" in db.read_bytes()


def test_compact_vacuums_and_residue_of_an_old_store_goes(tmp_path):
    """A store written without secure_delete (an older shopformer) keeps residue a plain
    erasure cannot reach; ``compact`` (VACUUM) rewrites the file without it."""
    db = tmp_path / "old.db"
    with EventStore(StoreConfig(f"sqlite:///{db}")) as store:
        store.add_events(shop_events(n_others=500, n_user=50))
    conn = sqlite3.connect(db, isolation_level=None)  # an old writer: deletes leave bytes behind
    conn.execute("PRAGMA secure_delete = OFF")
    conn.execute("DELETE FROM events WHERE user_id = ? AND event_type = 'view'", (USER,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with EventStore(StoreConfig(f"sqlite:///{db}")) as store:
        receipt = store.forget_user(USER, config=ErasureConfig(compact=True))
        assert receipt.removed == {"events": 13, "impressions": 0} and receipt.storage["vacuum"] is True
        assert store.count_events() == 500
    assert found(db) == {}


def test_receipt_status_follows_the_served_model(tmp_path):
    with EventStore(StoreConfig(f"sqlite:///{tmp_path / 's.db'}")) as store:
        store.add_events([{"user_id": u, "item_id": "i1", "event_type": "view", "timestamp": T0} for u in ("a", "b", "c")])
        unknown = store.forget_user("c", model_version="run-a", model_saw_user=False)
        assert unknown.status == COMPLETE and unknown.completed_version == "run-a"
        no_model = store.forget_user("b")  # nothing served: nothing claimed
        pending = store.forget_user("a", model_version="run-a", model_saw_user=True)
        assert (no_model.status, pending.status) == (PENDING, PENDING)
        assert store.last_erasure_id() == pending.receipt_id == 3
        # a run still trained on "a" completes only "b"; one trained without either, both
        assert store.settle_erasures("run-b", ["a", "x"]) == [no_model.receipt_id]
        assert store.settle_erasures("run-c", ["x"]) == [pending.receipt_id]
        got = {r.receipt_id: r for r in store.erasures()}
        assert got[pending.receipt_id].status == COMPLETE and got[pending.receipt_id].completed_version == "run-c"
        assert got[no_model.receipt_id].completed_version == "run-b"
        assert [r.receipt_id for r in store.erasures(user_id="a")] == [pending.receipt_id]
        assert store.erasures(status=PENDING) == []
        # a user with nothing stored still gets a receipt
        assert store.forget_user("never-seen").removed == {"events": 0, "impressions": 0}


@pytest.mark.skipif(not PG_URL, reason="set SHOPFORMER_TEST_POSTGRES_URL (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test) to run the PostgreSQL erasure test")
def test_postgres_rows_gone_vacuumed_and_receipt():
    schema = f"shopformer_test_{uuid.uuid4().hex[:12]}"
    try:
        with EventStore(StoreConfig(url=PG_URL, schema=schema, pool_size=2)) as store:
            store.add_events(shop_events(n_others=600, n_user=80))
            others = store.user_events("other5")
            receipt = store.forget_user(USER, model_version="run-a", model_saw_user=True)
            assert receipt.removed == {"events": 80, "impressions": 0} and receipt.event_types == {"search": 20, "view": 60}
            assert receipt.status == PENDING and receipt.storage["vacuum"] == "VACUUM"
            assert "WAL" in receipt.storage["not_reached"]
            assert store.user_events(USER).height == 0 and store.count_events() == 600
            assert_frame_equal(store.user_events("other5"), others)
            assert store.query_counts() == {}
            full = store.forget_user("other5", config=ErasureConfig(compact=True))
            assert full.storage["vacuum"] == "VACUUM FULL" and full.removed == {"events": len(others), "impressions": 0}
            engine = create_engine(normalize_url(PG_URL))
            with engine.connect() as conn:  # the receipts table holds hashes, not the raw ids
                raw = conn.execute(text(f'SELECT user_hash FROM "{schema}".erasures ORDER BY receipt_id')).scalars().all()
                left = conn.execute(text(f'SELECT count(*) FROM "{schema}".events WHERE user_id = :u'), {"u": USER}).scalar()
            engine.dispose()
            assert raw == [user_hash(USER), user_hash("other5")] and left == 0
            assert store.settle_erasures("run-b", ["other1"]) == [receipt.receipt_id, full.receipt_id]
            assert {r.status for r in store.erasures()} == {COMPLETE}
    finally:
        engine = create_engine(normalize_url(PG_URL))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
