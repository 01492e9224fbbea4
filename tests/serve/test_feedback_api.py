"""Impressions and attribution over HTTP: every recommending and search answer carries a
request_id (body and X-Request-ID), what it showed is logged to the store off the request
path (none lost on a clean shutdown, a full queue drops and counts), and events that name
the request_id are attributed to the answer, its position and its model on /metrics."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from shopformer.feedback.impressions import WRITERS, ImpressionLogConfig  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402

from test_api import AUTH, CATALOG, KEY, ids, shop, store_url  # noqa: E402, F401 - fixtures

PRICE = {r["item_id"]: float(r["price"]) for r in csv.DictReader(io.StringIO(CATALOG))}
QUIET = ImpressionLogConfig(flush_s=3600, batch_size=100_000)  # nothing written before a flush or the shutdown


def make(store_url, run, **kw) -> TestClient:  # noqa: F811
    kw.setdefault("search", False)
    settings = ServeSettings(store_url=store_url, run=run, api_key=KEY, **kw)
    return TestClient(create_app(settings), headers={"X-API-Key": KEY})


def samples(client, name: str) -> dict[tuple, float]:
    """The metric's samples as {sorted (label, value) pairs: value}."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def stored(store_url) -> list[dict]:  # noqa: F811
    with EventStore(StoreConfig(store_url)) as store:
        return store.impressions().to_dicts()


def test_every_answer_carries_a_request_id(shop, store_url, tmp_path):  # noqa: F811
    with make(store_url, shop["run1"], search=True, search_dir=tmp_path / "search", search_semantic=False,
              impressions=QUIET) as c:
        assert c.app.state.search.wait(60)
        answers = [c.get("/v1/users/u1/recommendations", params={"k": 3}),
                   c.get("/v1/users/u1/recommendations", params={"k": 3}),
                   c.post("/v1/recommendations/session", json={"item_ids": ["a", "b"], "k": 2}),
                   c.get("/v1/items/e/similar", params={"k": 2}),
                   c.get("/v1/search", params={"q": "cups"})]
        for r in answers:
            assert r.status_code == 200, r.text
            rid = r.json()["request_id"]
            assert r.headers["X-Request-ID"] == rid and len(rid) == 32 and int(rid, 16) >= 0
        assert len({r.json()["request_id"] for r in answers}) == len(answers)  # one id per answer
        spec = c.get("/openapi.json").json()["components"]["schemas"]
        for schema in ("RecommendationResponse", "SimilarResponse", "SearchResponse"):
            assert "request_id" in spec[schema]["required"]


def test_impressions_record_what_was_shown(shop, store_url, tmp_path):  # noqa: F811
    with make(store_url, shop["run1"], search=True, search_dir=tmp_path / "search", search_semantic=False,
              impressions=QUIET) as c:
        assert c.app.state.search.wait(60)
        user = c.get("/v1/users/u1/recommendations", params={"k": 3, "placement": "home", "session_id": "s-1"}).json()
        session = c.post("/v1/recommendations/session", json={"item_ids": ["e"], "k": 2, "placement": "cart"}).json()
        similar = c.get("/v1/items/a/similar", params={"k": 4}).json()
        found = c.get("/v1/search", params={"q": "cup", "user_id": "u7", "placement": "search_page"}).json()
        assert c.get("/v1/users/u1/recommendations", params={"placement": "bad label!"}).status_code == 422
        assert c.post("/v1/recommendations/session", json={"item_ids": [], "placement": ""}).status_code == 422
        assert c.get("/v1/search", params={"q": "cup", "session_id": "s-2"}).status_code == 200  # a known parameter
        assert stored(store_url) == []  # nothing written on the request path
        c.app.state.feedback.flush()
        rows = {r["request_id"]: r for r in stored(store_url)}
    version = user["model"]["version"]
    r = rows[user["request_id"]]
    assert (r["item_ids"], r["user_id"], r["session_id"], r["placement"], r["route"]) == (
        ids(user), "u1", "s-1", "home", "user_recommendations")
    assert (r["model_name"], r["model_version"], r["strategy"], r["experiment"], r["variant"]) == (
        "itemknn", version, "history", None, None)
    r = rows[session["request_id"]]
    assert (r["item_ids"], r["user_id"], r["placement"], r["route"]) == (ids(session), None, "cart", "session")
    r = rows[similar["request_id"]]
    assert (r["item_ids"], r["placement"], r["route"], r["model_version"]) == (ids(similar), "similar", "similar",
                                                                               version)
    r = rows[found["request_id"]]
    assert (r["item_ids"], r["user_id"], r["placement"], r["route"]) == (ids(found), "u7", "search_page", "search")
    assert r["strategy"] == found["strategy"] and r["model_version"] == (found["model"] or {}).get("version")
    assert len(rows) == 5


def test_clicks_and_purchases_are_attributed_to_answer_position_and_model(shop, store_url):  # noqa: F811
    with make(store_url, shop["run1"], impressions=QUIET) as c:
        home = c.get("/v1/users/u1/recommendations", params={"k": 3, "placement": "home"}).json()
        pdp = c.get("/v1/items/a/similar", params={"k": 3}).json()
        version, first, second = home["model"]["version"], ids(home)[0], ids(home)[1]
        outside = next(i for i in PRICE if i not in ids(pdp))  # an item the similar answer did not show
        posts = [{"event_id": "c1", "user_id": "u1", "item_id": second, "type": "click", "request_id": home["request_id"]},
                 {"event_id": "p1", "user_id": "u1", "item_id": first, "type": "purchase", "value": 2,
                  "context": {"request_id": home["request_id"]}},  # named in the context: the same
                 {"event_id": "p2", "user_id": "u1", "item_id": second, "type": "purchase",  # at the price paid
                  "context": {"request_id": home["request_id"], "price": 1.25}},
                 {"event_id": "c2", "user_id": "u1", "item_id": outside, "type": "click", "request_id": pdp["request_id"]},
                 {"event_id": "c3", "user_id": "u1", "item_id": "b", "type": "click", "request_id": "f" * 32},
                 {"event_id": "v1", "user_id": "u1", "item_id": "b", "type": "view"}]
        for e in posts:
            assert c.post("/v1/events", headers=AUTH, json=e).status_code == 201
        assert c.post("/v1/events", headers=AUTH, json=posts[0]).status_code == 200  # a re-post: counted once
        batch = [{"user_id": "u2", "item_id": ids(pdp)[2], "type": "add_to_cart", "request_id": pdp["request_id"]}]
        assert c.post("/v1/events:batch", headers=AUTH, json=batch).json()["inserted"] == 1
        assert c.post("/v1/events", headers=AUTH, json={**posts[0], "event_id": "x", "context": {"request_id": "zz"}}
                      ).status_code == 422  # two different request ids
        assert c.post("/v1/events", headers=AUTH, json={**posts[0], "event_id": "y", "request_id": "no spaces"}
                      ).status_code == 422
        for bad in ("free", -1, True):
            r = c.post("/v1/events", headers=AUTH, json={**posts[1], "event_id": "z", "context": {"price": bad}})
            assert r.status_code == 422 and "context.price" in r.text
        ctx = {e["event_id"]: e["context"] for e in c.get("/v1/users/u1", headers=AUTH).json()["events"]}
        assert ctx["c1"] == {"request_id": home["request_id"]} and ctx["v1"] is None

        shown = samples(c, "shopformer_impressions_total")
        attributed = samples(c, "shopformer_attributed_events_total")
        revenue = samples(c, "shopformer_attributed_revenue_total")
        missed = samples(c, "shopformer_unattributed_events_total")
    labels = lambda **kw: tuple(sorted(kw.items()))  # noqa: E731
    assert shown == {labels(model_version=version, variant="", placement="home"): 1.0,
                     labels(model_version=version, variant="", placement="similar"): 1.0}
    assert attributed == {
        labels(event_type="click", model_version=version, variant="", placement="home", position="2"): 1.0,
        labels(event_type="purchase", model_version=version, variant="", placement="home", position="1"): 1.0,
        labels(event_type="purchase", model_version=version, variant="", placement="home", position="2"): 1.0,
        labels(event_type="click", model_version=version, variant="", placement="similar", position="not_shown"): 1.0,
        labels(event_type="add_to_cart", model_version=version, variant="", placement="similar", position="3"): 1.0,
    }
    assert revenue == {labels(model_version=version, variant="", placement="home"): 2 * PRICE[first] + 1.25}
    assert missed == {labels(event_type="click"): 1.0}  # c3 named no answer


def test_another_process_attributes_from_the_store(shop, store_url):  # noqa: F811
    with make(store_url, shop["run1"], impressions=QUIET) as a, make(store_url, shop["run1"], impressions=QUIET) as b:
        answer = a.get("/v1/users/u2/recommendations", params={"k": 2}).json()
        a.app.state.feedback.flush()
        e = {"user_id": "u2", "item_id": ids(answer)[1], "type": "click", "request_id": answer["request_id"]}
        assert b.post("/v1/events", headers=AUTH, json=e).status_code == 201
        got = samples(b, "shopformer_attributed_events_total")
    assert list(got.values()) == [1.0] and dict(next(iter(got)))["position"] == "2"


@pytest.mark.parametrize("writer", WRITERS)
def test_a_clean_shutdown_loses_no_impression(shop, store_url, writer):  # noqa: F811
    with make(store_url, shop["run1"], impressions=replace(QUIET, writer=writer)) as c:
        assert (getattr(c.app.state.feedback.log, "pid", None) is not None) == (writer == "process")
        given = [c.get(f"/v1/users/u{1 + i % 7}/recommendations", params={"k": 3}).json()["request_id"]
                 for i in range(500)]
        assert stored(store_url) == []  # all still queued (flush_s is an hour)
    rows = stored(store_url)
    assert len(rows) == 500 and sorted(r["request_id"] for r in rows) == sorted(given)


def test_a_full_queue_drops_and_counts(shop, store_url):  # noqa: F811
    config = ImpressionLogConfig(flush_s=3600, batch_size=100_000, queue_size=5)
    with make(store_url, shop["run1"], impressions=config) as c:
        for _ in range(12):
            assert c.get("/v1/items/a/similar").status_code == 200  # answered all the same
        dropped = samples(c, "shopformer_impressions_dropped_total")
        queued = samples(c, "shopformer_impressions_queued")
        assert samples(c, "shopformer_impressions_total")  # every answer is counted as shown
    assert dropped[(("reason", "queue_full"),)] == 7.0 and queued[()] == 5.0
    assert len(stored(store_url)) == 5


def test_impressions_off_still_gives_request_ids(shop, store_url):  # noqa: F811
    with make(store_url, shop["run1"], impressions=None) as c:
        answer = c.get("/v1/users/u3/recommendations", params={"k": 2}).json()
        assert len(answer["request_id"]) == 32
        e = {"user_id": "u3", "item_id": ids(answer)[0], "type": "click", "request_id": answer["request_id"]}
        assert c.post("/v1/events", headers=AUTH, json=e).status_code == 201
        attributed = samples(c, "shopformer_attributed_events_total")  # this process remembers its answers
        assert "shopformer_impressions_dropped" not in c.get("/metrics").text
    assert stored(store_url) == [] and list(attributed.values()) == [1.0]


def test_settings_from_the_environment():
    on = ServeSettings.from_env({"SHOPFORMER_IMPRESSIONS_FLUSH_S": "0.25", "SHOPFORMER_IMPRESSIONS_QUEUE": "100",
                                 "SHOPFORMER_IMPRESSIONS_BATCH": "10", "SHOPFORMER_IMPRESSIONS_RECENT": "0"})
    assert on.impressions == ImpressionLogConfig(flush_s=0.25, batch_size=10, queue_size=100, recent=0)
    assert ServeSettings.from_env({}).impressions == ImpressionLogConfig()
    assert ServeSettings.from_env({"SHOPFORMER_IMPRESSIONS": "off"}).impressions is None
    for env, words in (({"SHOPFORMER_IMPRESSIONS_FLUSH_S": "0"}, "FLUSH_S"),
                       ({"SHOPFORMER_IMPRESSIONS_QUEUE": "0"}, "QUEUE"),
                       ({"SHOPFORMER_IMPRESSIONS": "maybe"}, "SHOPFORMER_IMPRESSIONS")):
        with pytest.raises(ValueError, match=words):
            ServeSettings.from_env(env)


def test_ids_no_event_could_carry_are_not_logged(shop, store_url):  # noqa: F811
    with make(store_url, shop["run1"], impressions=QUIET) as c:
        r = c.get("/v1/users/a%00b/recommendations", params={"session_id": "s\x00"})
        assert r.status_code == 200, r.text
        c.app.state.feedback.flush()
        [row] = stored(store_url)
        assert (row["request_id"], row["user_id"], row["session_id"]) == (r.json()["request_id"], None, None)
        assert samples(c, "shopformer_impressions_dropped_total")[(("reason", "write_failed"),)] == 0.0


@pytest.mark.parametrize("writer", WRITERS)
def test_logging_can_be_paused_and_resumed_at_runtime(shop, store_url, writer):  # noqa: F811
    def answer() -> str:
        r = c.get("/v1/users/u2/recommendations", params={"k": 3})
        assert r.status_code == 200
        return r.json()["request_id"]

    with make(store_url, shop["run1"], impressions=replace(QUIET, writer=writer)) as c:
        before = [answer() for _ in range(3)]
        paused = c.put("/v1/admin/impressions", json={"paused": True})
        assert paused.status_code == 200, paused.text
        assert paused.json() == {"paused": True, "queued": 0, "written": 3, "dropped": 0, "skipped": 0, "flushed": 3}
        assert sorted(r["request_id"] for r in stored(store_url)) == sorted(before)  # the pause wrote the queue
        while_paused = [answer() for _ in range(4)]  # still answered, each with its own id
        assert len(set(while_paused)) == 4
        state = c.get("/v1/admin/impressions").json()
        assert state == {"paused": True, "queued": 0, "written": 3, "dropped": 0, "skipped": 4, "flushed": None}
        assert samples(c, "shopformer_impressions_skipped_total") == {(): 4.0}
        assert samples(c, "shopformer_impressions_paused") == {(): 1.0}
        assert sum(samples(c, "shopformer_impressions_total").values()) == 7.0  # every answer counted as shown
        resumed = c.put("/v1/admin/impressions", json={"paused": False}).json()
        assert resumed["paused"] is False and resumed["flushed"] is None and resumed["skipped"] == 4
        after = [answer() for _ in range(2)]
        assert samples(c, "shopformer_impressions_paused") == {(): 0.0}
        assert c.put("/v1/admin/impressions", json={"paused": "later"}).status_code == 422
        assert c.put("/v1/admin/impressions", json={"paused": True, "x": 1}).status_code == 422
        reader = c.post("/v1/admin/keys", json={"name": "reader", "scopes": ["read"]}).json()["key"]
        for call in (c.get, lambda url, **kw: c.put(url, json={"paused": True}, **kw)):
            assert call("/v1/admin/impressions", headers={"X-API-Key": reader}).status_code == 403
        assert c.get("/v1/admin/impressions").json()["paused"] is False  # the refused pause did nothing
        audit = c.get("/v1/admin/audit", params={"action": "impressions_pause"}).json()["entries"]
        assert [(e["target"], e["detail"]) for e in audit] == [("impressions", {"flushed": 3})]
        assert len(c.get("/v1/admin/audit", params={"action": "impressions_resume"}).json()["entries"]) == 1
    assert sorted(r["request_id"] for r in stored(store_url)) == sorted(before + after)  # none of the paused ones


def test_pausing_needs_logging_on(shop, store_url):  # noqa: F811
    with make(store_url, shop["run1"], impressions=None) as c:
        for r in (c.get("/v1/admin/impressions"), c.put("/v1/admin/impressions", json={"paused": True})):
            assert r.status_code == 409 and "SHOPFORMER_IMPRESSIONS=0" in r.text
