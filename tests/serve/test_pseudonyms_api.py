"""Pseudonymous customer ids over HTTP (SHOPFORMER_PSEUDONYM_KEY): callers use raw ids,
the store, its WAL, the served run and the logs only ever hold pseudonyms; a store is
bound to one key (or to raw ids) and refuses the others."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("tantivy")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.privacy.pseudonym import PseudonymConfig, Pseudonymizer  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.serve.pseudonyms import AccessLogPseudonyms  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402
from shopformer.store.pseudonyms import STATE, PseudonymMismatch  # noqa: E402

from test_api import AUTH, CATALOG, KEY  # noqa: E402 - the same shop catalog and key as test_api

CONFIG = PseudonymConfig(b"pseudonym key for the tests, 32b")
P = Pseudonymizer(CONFIG)
OTHER = PseudonymConfig(b"a different key, also 32 bytes!!")

SEQUENCES = """\
annRaw41 a b c
bobRaw52 a b d
cyRaw63 b c d
deeRaw74 e f g
eveRaw85 e f h
"""
#: raw ids the API is given (the file's and new ones); none may be stored or logged
ZED, KIM, SESSION = "zedRaw96", "kimRaw07", "sessRaw18"
RAW = ("annRaw41", "bobRaw52", "cyRaw63", ZED, KIM, SESSION)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pshop")
    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    ingest(root / "seq.txt", "sequence", root / "data", catalog=root / "catalog.csv", pseudonyms=P)
    ingest(root / "seq.txt", "sequence", root / "raw", catalog=root / "catalog.csv")
    train_run(make_model("itemknn", {"shrink": "0"}), root / "data", DataConfig(), root / "run", fit_on="all")
    train_run(make_model("itemknn", {"shrink": "0"}), root / "raw", DataConfig(), root / "rawrun", fit_on="all")
    return {"data": root / "data", "raw": root / "raw", "run": root / "run", "rawrun": root / "rawrun"}


def store_of(folder: Path, path: Path) -> str:
    url = f"sqlite:///{path}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, folder)
    return url


def make(url: str, run: Path | None, tmp_path: Path, pseudonyms: PseudonymConfig | None = CONFIG, **kw) -> TestClient:
    settings = ServeSettings(store_url=url, run=run, api_key=KEY, search_dir=tmp_path / "search",
                             search_semantic=False, pseudonyms=pseudonyms, sync_s=0, **kw)
    return TestClient(create_app(settings))


def found(data: bytes) -> list[str]:
    return [r for r in RAW if r.encode() in data]


def server_lines(caplog) -> list[str]:  # noqa: ANN001
    """Every captured log line but the test's own HTTP client's (which logs its URLs)."""
    return [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]


def test_raw_ids_work_everywhere_and_are_never_stored(shop, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "store.db"
    url = store_of(shop["data"], db)
    with make(url, shop["run"], tmp_path) as c:
        assert c.app.state.search.wait(60)
        r = c.post("/v1/events", headers=AUTH, json={"user_id": ZED, "item_id": "a", "type": "view",
                                                      "session_id": SESSION})
        assert r.status_code == 201, r.text
        batch = [{"user_id": ZED, "item_id": "b", "type": "view", "session_id": SESSION},
                 {"user_id": ZED, "type": "search", "query": "cups"},
                 {"user_id": KIM, "item_id": "e", "type": "purchase", "session_id": SESSION}]
        assert c.post("/v1/events:batch", headers=AUTH, json=batch).json()["inserted"] == 3

        recs = c.get(f"/v1/users/{ZED}/recommendations", headers=AUTH).json()
        assert recs["history_length"] == 3 and recs["strategy"] == "history"  # events posted by raw id, found by it
        assert recs["user_id"] == P.user(ZED)  # answers name the pseudonym
        by_pseudonym = c.get(f"/v1/users/{P.user(ZED)}/recommendations", headers=AUTH).json()
        assert by_pseudonym["items"] == recs["items"]  # a pseudonym of this key is the same customer
        assert c.get("/v1/users/annRaw41/recommendations", headers=AUTH).json()["known_user"] is True

        user = c.get(f"/v1/users/{ZED}", headers=AUTH).json()
        assert len(user["events"]) == 3 and {e["session_id"] for e in user["events"]} == {P.session(SESSION), None}
        hit = c.get("/v1/search", params={"q": "cup", "user_id": "annRaw41"}, headers=AUTH).json()
        assert hit["user_id"] == P.user("annRaw41") and "personal" in hit["strategy"]  # the model knew them

        export = c.get(f"/v1/users/{ZED}/export", headers=AUTH).json()
        assert export["user_id"] == P.user(ZED) and len(export["events"]) == 3
        # the two answers given to ZED (by raw id and by pseudonym), kept under the pseudonym
        assert [i["request_id"] for i in export["impressions"]] == [recs["request_id"], by_pseudonym["request_id"]]
        receipt = c.delete(f"/v1/users/{ZED}", headers=AUTH).json()
        assert receipt["removed"] == {"events": 3, "impressions": 2} and receipt["user_id"] == P.user(ZED)
        assert receipt["user_hash"] == hashlib.sha256(P.user(ZED).encode()).hexdigest()  # keyed on the pseudonym
        assert c.get(f"/v1/users/{ZED}/export", headers=AUTH).json()["erasures"][0]["receipt_id"] == receipt["receipt_id"]

        foreign = Pseudonymizer(OTHER).user(ZED)
        r = c.get(f"/v1/users/{foreign}/recommendations", headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "foreign_pseudonym"
        r = c.post("/v1/events", headers=AUTH, json={"user_id": foreign, "item_id": "a", "type": "view"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "user_id"]

        shown = c.get("/v1/items/a/similar", params={"session_id": SESSION}).json()
        c.app.state.feedback.flush()  # the answers' impressions are in the bytes read below
        with EventStore(StoreConfig(url)) as store:
            assert store.impression(shown["request_id"])["session_id"] == P.session(SESSION)
            assert set(store.impressions()["user_id"].drop_nulls()) <= {P.user(u) for u in RAW}

        stored = db.read_bytes() + Path(f"{db}-wal").read_bytes()
        assert P.user(KIM).encode() in stored and P.session(SESSION).encode() in stored  # the check can see ids
        assert found(stored) == []
        metrics = c.get("/metrics").text
    assert found(db.read_bytes()) == [] and found(metrics.encode()) == []
    logged = "\n".join(server_lines(caplog))
    assert "serving itemknn" in logged  # the server's log was captured
    assert found(logged.encode()) == []
    with EventStore(StoreConfig(url)) as store:
        assert store.get_state(STATE) == P.fingerprint


def test_access_log_names_pseudonyms(shop, tmp_path, caplog):
    """The real server: uvicorn's access log line for each request holds the pseudonym."""
    import uvicorn

    caplog.set_level(logging.INFO)
    # uvicorn's own logging config (applied by any earlier test in this process) stops its
    # access logger propagating to caplog's root handler: listen on the logger itself
    access, seen = logging.getLogger("uvicorn.access"), []
    handler = logging.Handler()
    handler.emit = seen.append
    level = access.level
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    url = store_of(shop["data"], tmp_path / "store.db")
    app = create_app(ServeSettings(store_url=url, run=shop["run"], api_key=KEY, search=False, sync_s=0,
                                   pseudonyms=CONFIG))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/users/annRaw41/recommendations", headers=AUTH).status_code == 200
        assert httpx.get(f"{base}/v1/users/{KIM}", params={"limit": 5}, headers=AUTH).status_code == 404
        httpx.get(f"{base}/v1/search", params={"q": "cup", "user_id": "bobRaw52"}, headers=AUTH)
    finally:
        server.should_exit = True
        thread.join(30)
        access.removeHandler(handler)
        access.setLevel(level)
    lines = [r.getMessage() for r in seen]
    assert any(f"/v1/users/{P.user('annRaw41')}/recommendations" in line for line in lines), lines
    assert any(f"user_id={P.user('bobRaw52')}" in line for line in lines), lines
    assert found("\n".join(server_lines(caplog)).encode()) == []


def test_the_access_log_filter_maps_what_reaches_it():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", f"/v1/users/{KIM}/export?x=1&user_id={ZED}", "1.1", 200), None)
    assert AccessLogPseudonyms(P).filter(record)
    assert record.getMessage() == f'1.2.3.4:5 - "GET /v1/users/{P.user(KIM)}/export?x=1&user_id={P.user(ZED)} HTTP/1.1" 200'
    other = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                              ("1.2.3.4:5", "GET", "/v1/items/kimRaw07", "1.1", 200), None)
    AccessLogPseudonyms(P).filter(other)
    assert "kimRaw07" in other.getMessage()  # item ids are not customers' ids


def test_a_store_is_bound_to_one_key(shop, tmp_path):
    raw_url = store_of(shop["raw"], tmp_path / "raw.db")
    with pytest.raises(PseudonymMismatch, match="raw customer ids"):
        with make(raw_url, None, tmp_path):
            pass
    url = store_of(shop["data"], tmp_path / "pseudo.db")
    with pytest.raises(PseudonymMismatch, match="holds pseudonymous customer ids"):
        with make(url, None, tmp_path, pseudonyms=None):
            pass
    with pytest.raises(PseudonymMismatch, match="another key"):
        with make(url, None, tmp_path, pseudonyms=OTHER):
            pass
    with pytest.raises(ValueError, match="trained on raw customer ids"):
        with make(url, shop["rawrun"], tmp_path):
            pass
    with make(raw_url, shop["rawrun"], tmp_path, pseudonyms=None, search=False) as c:  # without a key: as before
        assert c.get("/v1/users/annRaw41/recommendations", headers=AUTH).json()["user_id"] == "annRaw41"

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with make(empty, None, tmp_path, search=False) as c:  # the first server binds an empty store to its key
        assert c.post("/v1/events", headers=AUTH, json={"user_id": KIM, "item_id": "a", "type": "view"}).status_code == 201
    with EventStore(StoreConfig(empty)) as store:
        assert store.get_state(STATE) == P.fingerprint and store.user_events(P.user(KIM)).height == 1
    with pytest.raises(PseudonymMismatch):
        with make(empty, None, tmp_path, pseudonyms=OTHER, search=False):
            pass


@pytest.mark.skipif(not os.environ.get("SHOPFORMER_TEST_POSTGRES_URL"),
                    reason="set SHOPFORMER_TEST_POSTGRES_URL to run the PostgreSQL variant")
def test_postgresql_store_holds_no_raw_id(shop, tmp_path):
    from sqlalchemy import create_engine, text

    from shopformer.store.engine import normalize_url, scratch_database

    with scratch_database(os.environ["SHOPFORMER_TEST_POSTGRES_URL"], "shopformer_pseudonyms") as url:
        with EventStore(StoreConfig(url)) as store:
            import_folder(store, shop["data"])
        with make(url, shop["run"], tmp_path, search=False) as c:
            body = {"user_id": KIM, "item_id": "a", "type": "view", "session_id": SESSION}
            assert c.post("/v1/events", headers=AUTH, json=body).status_code == 201
            assert c.get(f"/v1/users/{KIM}", headers=AUTH).json()["events"][0]["session_id"] == P.session(SESSION)
        with pytest.raises(PseudonymMismatch):
            with make(url, None, tmp_path, pseudonyms=None, search=False):
                pass
        engine = create_engine(normalize_url(url))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT user_id, coalesce(session_id, '') FROM events")).all()
        engine.dispose()
        assert (P.user(KIM), P.session(SESSION)) in rows and len(rows) == 16
        assert found(repr(rows).encode()) == []
