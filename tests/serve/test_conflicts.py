"""The same event_id posted again: the same payload is a harmless duplicate (200), another
payload is a 409 naming the stored version's fingerprint, and nothing is written."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from test_api import AUTH, event, make_client, shop, store_url  # noqa: E402, F401 - fixtures

from shopformer.store import fingerprint  # noqa: E402


@pytest.fixture
def client(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], search=False) as c:
        yield c


def stored(client, user: str) -> list[dict]:
    r = client.get(f"/v1/users/{user}")
    return r.json()["events"] if r.status_code == 200 else []


def test_a_changed_payload_is_409_with_the_stored_fingerprint(client):
    first = event("c1", "a", "purchase", event_id="ev-1", value=2, timestamp="2024-05-01T10:00:00Z",
                  context={"page": "home", "ab": "x"})
    assert client.post("/v1/events", json=first, headers=AUTH).status_code == 201
    [kept] = stored(client, "c1")
    assert kept["fingerprint"].startswith("sha256:")

    again = client.post("/v1/events", json={**first, "context": {"ab": "x", "page": "home"}}, headers=AUTH)
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "event_id": "ev-1"}

    r = client.post("/v1/events", json={**first, "value": 3}, headers=AUTH)
    assert r.status_code == 409, r.text
    body = r.json()
    [conflict] = body["detail"]
    assert conflict["loc"] == ["body", "event_id"] and conflict["input"] == "ev-1"
    assert conflict["fields"] == ["value"] and conflict["stored_fingerprint"] == kept["fingerprint"]
    assert "nothing was written" in body["message"]
    moved = client.post("/v1/events", json={**first, "timestamp": "2024-05-02T10:00:00Z"}, headers=AUTH)
    assert moved.status_code == 409 and moved.json()["detail"][0]["fields"] == ["timestamp"]
    assert stored(client, "c1") == [kept]  # the first version, unchanged


def test_the_fingerprint_is_the_stored_rows(client, store_url):  # noqa: F811
    from shopformer.store import EventStore, StoreConfig

    client.post("/v1/events", json=event("c2", "b", event_id="ev-2", query="q", session_id="s"), headers=AUTH)
    [shown] = stored(client, "c2")
    with EventStore(StoreConfig(store_url)) as store:
        row = store.user_events("c2").row(0, named=True)
    assert shown["fingerprint"] == fingerprint(row)


def test_a_repost_without_a_timestamp_stays_idempotent(client):
    """The server fills in the time of each post: it is not the poster's, so it is not compared."""
    e = event("c3", "a", event_id="ev-3", value=1)
    assert client.post("/v1/events", json=e, headers=AUTH).status_code == 201
    assert client.post("/v1/events", json=e, headers=AUTH).status_code == 200
    r = client.post("/v1/events", json={**e, "item_id": "b"}, headers=AUTH)
    assert r.status_code == 409 and r.json()["detail"][0]["fields"] == ["item_id"]
    assert [x["item_id"] for x in stored(client, "c3")] == ["a"]


def test_a_batch_with_one_conflict_writes_nothing(client):
    client.post("/v1/events", json=event("c4", "a", event_id="ev-4"), headers=AUTH)
    batch = [event("c4", "b", event_id="ev-5"), event("c4", "c", event_id="ev-4")]
    r = client.post("/v1/events:batch", json=batch, headers=AUTH)
    assert r.status_code == 409
    assert [d["loc"] for d in r.json()["detail"]] == [["body", 1, "event_id"]]
    assert r.json()["detail"][0]["fields"] == ["item_id"]
    assert [x["event_id"] for x in stored(client, "c4")] == ["ev-4"]
    ok = client.post("/v1/events:batch", json=[event("c4", "b", event_id="ev-5"), event("c4", "a", event_id="ev-4")],
                     headers=AUTH)
    assert ok.status_code == 200 and ok.json() == {"inserted": 1, "duplicates": 1}


def test_one_event_id_twice_in_a_batch(client):
    same = [event("c5", "a", event_id="ev-6"), event("c5", "a", event_id="ev-6")]
    r = client.post("/v1/events:batch", json=same, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"inserted": 1, "duplicates": 1}
    clash = [event("c6", "a", event_id="ev-7"), event("c6", "b", event_id="ev-7")]
    r = client.post("/v1/events:batch", json=clash, headers=AUTH)
    assert r.status_code == 422
    [d] = r.json()["detail"]
    assert d["loc"] == ["body", 1, "event_id"] and "row 0" in d["msg"] and "item_id" in d["msg"]
    assert stored(client, "c6") == []


def test_409_is_documented(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/events:batch"):
        assert "409" in spec["paths"][path]["post"]["responses"]
    assert "fingerprint" in spec["components"]["schemas"]["StoredEvent"]["properties"]
