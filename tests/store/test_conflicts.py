"""An event_id stored with one payload and written again with another: ``insert_events(...,
conflicts=True)`` refuses it (nothing of the batch written) naming the stored version's
fingerprint; the same payload again stays a duplicate. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from shopformer.store import EventConflict, EventStore, StoreConfig, fingerprint
from shopformer.store.engine import normalize_url
from shopformer.store.fingerprint import canonical, differing
from shopformer.store.frames import check_events

T0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
PG_URL = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL")
E1 = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "purchase", "timestamp": T0,
      "session_id": "s1", "query": None, "value": 2.0, "context": '{"page": "home", "ab": [1, 2]}'}


def write(store: EventStore, rows: list[dict], **kw):
    good, report = check_events(rows)
    return store.insert_events(good, report, conflicts=True, **kw)


def test_fingerprint_is_of_the_canonical_payload():
    same = {**E1, "event_id": "other", "timestamp": T0.replace(tzinfo=None),  # naive = UTC
            "context": '{"ab": [1, 2], "page": "home"}', "position": 7}
    assert fingerprint(same) == fingerprint(E1) and differing(same, E1) == []
    assert canonical(E1)["timestamp"] == "2024-05-01T10:00:00.123456Z" and canonical(E1)["context"] == {
        "page": "home", "ab": [1, 2]}
    assert fingerprint(E1).startswith("sha256:") and len(fingerprint(E1)) == 7 + 64
    changed = {**E1, "value": 3.0, "timestamp": T0 + timedelta(seconds=1)}
    assert fingerprint(changed) != fingerprint(E1)
    assert differing(changed, E1) == ["timestamp", "value"] and differing(changed, E1, ("timestamp",)) == ["value"]
    assert differing({**E1, "context": "not json"}, E1) == ["context"]


class ConflictContract:
    """Subclasses provide ``config`` (a fresh, empty store)."""

    @pytest.fixture
    def store(self, config):
        s = EventStore(config)
        yield s
        s.close()

    def test_a_changed_payload_is_refused_and_nothing_of_its_batch_written(self, store):
        assert write(store, [E1]).inserted == 1
        stored = store.events().row(0, named=True)
        before = store.count_events()
        with pytest.raises(EventConflict) as info:
            write(store, [{**E1, "event_id": "new"}, {**E1, "value": 5.0, "query": "x"}])
        assert info.value.conflicts == [("e1", ["query", "value"], fingerprint(stored))]
        assert fingerprint(stored) == fingerprint(E1)
        assert store.count_events() == before  # "new" was not written either
        assert store.events()["value"].to_list() == [2.0]

    def test_the_same_payload_again_is_a_duplicate(self, store):
        write(store, [E1])
        reordered = {**E1, "context": '{"ab": [1, 2], "page": "home"}'}
        res = write(store, [reordered, {**E1, "event_id": "e2"}])
        assert (res.inserted, res.duplicates) == (1, 1)

    def test_a_timestamp_the_server_filled_in_is_not_compared(self, store):
        write(store, [E1])
        later = {**E1, "timestamp": T0 + timedelta(hours=1)}
        with pytest.raises(EventConflict, match="timestamp"):
            write(store, [later])
        assert write(store, [later], server_timed={"e1"}).duplicates == 1

    def test_without_conflicts_the_first_version_is_kept(self, store):
        store.add_events([E1])
        res = store.add_events([{**E1, "value": 9.0}])
        assert (res.inserted, res.duplicates) == (0, 1) and store.events()["value"].to_list() == [2.0]

    def test_concurrent_writers_of_one_event_id(self, store):
        """Eight writers, eight payloads, one id: one is stored, the others are refused
        (the check runs inside the serialized write, so none slips between)."""
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def post(i: int) -> None:
            barrier.wait()
            try:
                write(store, [{**E1, "value": float(i)}])
                outcomes.append("stored")
            except EventConflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 7 + ["stored"]
        assert store.count_events() == 1


class TestSQLite(ConflictContract):
    @pytest.fixture
    def config(self, tmp_path):
        return StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.skipif(not PG_URL, reason="set SHOPFORMER_TEST_POSTGRES_URL (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test) to run the PostgreSQL store tests")
class TestPostgres(ConflictContract):
    @pytest.fixture
    def config(self):
        schema = f"shopformer_test_{uuid.uuid4().hex[:12]}"
        yield StoreConfig(url=PG_URL, schema=schema, pool_size=4)
        engine = create_engine(normalize_url(PG_URL))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
