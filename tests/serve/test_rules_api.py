"""Business rules over the tiny shop of test_api: edited through the admin API and the
CLI (audited, admin only), applied to user, session and similar-items answers with
their provenance, followed by a second process, and kept across a restart."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("fastapi")

from typer.testing import CliRunner  # noqa: E402

from shopformer.cli import app as cli  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402
from shopformer.store.access import audit_entries, create_key  # noqa: E402

from test_api import ids, make_client, shop, store_url  # noqa: E402, F401 - fixtures

RULES = "/v1/admin/rules"


@pytest.fixture
def client(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], sync_s=0) as c:
        yield c


def add(client, **rule) -> int:
    r = client.post(RULES, json=rule)
    assert r.status_code == 201, r.text
    return r.json()["rule_id"]


def test_rules_are_edited_by_admins_only_with_audit_entries(shop, store_url):  # noqa: F811
    with EventStore(StoreConfig(store_url)) as s:
        _, reader = create_key(s, "reader", ["read"])
    with make_client(store_url, shop["run1"], sync_s=0) as c:
        rule = {"kind": "exclude", "match": {"items": ["d"]}}
        assert c.post(RULES, json=rule, headers={"X-API-Key": reader}).status_code == 403
        assert c.get(RULES, headers={"X-API-Key": reader}).status_code == 403
        assert c.delete(f"{RULES}/1", headers={"X-API-Key": reader}).status_code == 403
        bad = c.post(RULES, json={"kind": "boost", "match": {"brand": "x"}})
        assert bad.status_code == 400 and "weight" in bad.json()["detail"]
        naive = c.post(RULES, json={**rule, "starts_at": "2026-12-01T00:00:00"})
        assert naive.status_code == 400 and "UTC" in naive.json()["detail"]

        assert ids(c.get("/v1/users/u1/recommendations", params={"k": 3}).json())[0] == "d"
        rule_id = add(c, **rule, note="recalled")
        listed = c.get(RULES).json()
        assert [(x["rule_id"], x["kind"], x["match"], x["note"]) for x in listed] == [
            (rule_id, "exclude", {"items": ["d"]}, "recalled")]
        body = c.get("/v1/users/u1/recommendations", params={"k": 3}).json()
        assert ids(body) == ["e", "f", "g"]  # d excluded, still k items
        assert body["rules"] == [{"rule_id": rule_id, "item_id": "d", "effect": "excluded", "from_rank": 1,
                                  "to_rank": None}]
        assert c.delete(f"{RULES}/{rule_id}").json()["rule_id"] == rule_id
        assert c.delete(f"{RULES}/{rule_id}").status_code == 404
        body = c.get("/v1/users/u1/recommendations", params={"k": 3}).json()
        assert ids(body)[0] == "d" and body["rules"] == []
    with EventStore(StoreConfig(store_url)) as s:
        got = [(e.action, e.outcome, e.target) for e in audit_entries(s) if e.action.startswith("rule_")]
        assert got == [("rule_add", "failed", "boost"), ("rule_add", "failed", "exclude"),
                       ("rule_add", "ok", str(rule_id)), ("rule_remove", "ok", str(rule_id))]


def test_pin_inserts_only_what_the_request_allows_and_explains_the_move(client):
    pin = add(client, kind="pin", match={"items": ["h"]}, position=1)
    body = client.get("/v1/users/u1/recommendations", params={"k": 3, "explain": True}).json()
    assert ids(body) == ["h", "d", "e"]
    move = {"rule_id": pin, "item_id": "h", "effect": "pinned", "from_rank": 5, "to_rank": 1}
    assert body["rules"] == [move]
    assert body["items"][0]["explanation"]["business_rules"] == [move]
    assert body["items"][1]["explanation"]["business_rules"] == []
    ranks = [(x["explanation"]["rules"]["model_rank"], x["explanation"]["rules"]["final_rank"]) for x in body["items"]]
    assert [r[1] for r in ranks] == [1, 2, 3] and ranks[0][0] > ranks[1][0]  # h: pinned up from below d
    # h is unavailable: a request that filters to available items does not get it pinned
    body = client.get("/v1/users/u1/recommendations", params={"k": 3, "available_only": True}).json()
    assert "h" not in ids(body) and body["rules"] == []
    # a pinned item already in the customer's history is not brought back
    add(client, kind="pin", match={"items": ["a"]}, position=1, priority=9)
    assert "a" not in ids(client.get("/v1/users/u1/recommendations", params={"k": 3}).json())


def test_bury_boost_and_exclude_on_every_recommending_route(client):
    bury = add(client, kind="bury", match={"category": "garden"}, weight=2)
    body = client.get("/v1/users/u4/recommendations", params={"k": 3}).json()
    assert ids(body) == ["a", "b", "c"]  # h (the model's first) buried below k; k still filled
    assert {"rule_id": bury, "item_id": "h", "effect": "buried", "from_rank": 1, "to_rank": None} in body["rules"]
    client.delete(f"{RULES}/{bury}")

    boost = add(client, kind="boost", match={"category": "garden"}, weight=1.5)
    body = client.get("/v1/items/a/similar", params={"k": 3}).json()
    assert ids(body) == ["e", "f", "g"]  # 0 + 1.5 beats b, c, d's normalized 1
    assert body["rules"][0] == {"rule_id": boost, "item_id": "e", "effect": "boosted", "from_rank": 4, "to_rank": 1}
    client.delete(f"{RULES}/{boost}")

    out = add(client, kind="exclude", match={"unavailable": True})
    body = client.post("/v1/recommendations/session", json={"item_ids": ["e"], "k": 3}).json()
    assert ids(body) == ["f", "g", "a"]
    assert body["rules"] == [{"rule_id": out, "item_id": "h", "effect": "excluded", "from_rank": 3, "to_rank": None}]


def test_window_and_audience(client):
    now = datetime.now(timezone.utc)
    add(client, kind="exclude", match={"items": ["d"]}, starts_at=(now + timedelta(days=1)).isoformat())
    add(client, kind="exclude", match={"items": ["d"]}, starts_at=(now - timedelta(days=2)).isoformat(),
        ends_at=(now - timedelta(days=1)).isoformat())
    body = client.get("/v1/users/u1/recommendations", params={"k": 3}).json()
    assert ids(body)[0] == "d" and body["rules"] == []  # both outside their window
    add(client, kind="exclude", match={"items": ["d"]}, audience="new")
    add(client, kind="exclude", match={"items": ["e"]}, audience=["nobody"])
    assert ids(client.get("/v1/users/u1/recommendations", params={"k": 3}).json())[:2] == ["d", "e"]
    new = client.get("/v1/users/nobody/recommendations", params={"k": 8}).json()
    assert new["history_length"] == 0 and not {"d", "e"} & set(ids(new)) and len(new["items"]) == 6


def test_a_second_process_follows_and_a_restart_keeps_the_rules(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], sync_s=0.05) as a, make_client(store_url, shop["run1"], sync_s=0.05) as b:
        assert ids(b.get("/v1/users/u1/recommendations", params={"k": 1}).json()) == ["d"]
        add(a, kind="exclude", match={"items": ["d"]})
        deadline = time.monotonic() + 5
        while ids(b.get("/v1/users/u1/recommendations", params={"k": 1}).json()) == ["d"]:
            assert time.monotonic() < deadline, "the second process never applied the rule"
            time.sleep(0.05)
    with make_client(store_url, shop["run1"], sync_s=0) as c:  # no sync thread: loaded at start
        assert ids(c.get("/v1/users/u1/recommendations", params={"k": 1}).json()) == ["e"]


def test_cli_adds_lists_and_removes_with_audit_entries(store_url):  # noqa: F811
    runner = CliRunner()
    r = runner.invoke(cli, ["rules", "add", "boost", "--store", store_url, "--match", "brand=acme", "--weight", "0.5",
                            "--starts", "2026-12-01T00:00:00Z", "--audience", "u1,u2"])
    assert r.exit_code == 0, r.output
    listed = json.loads(runner.invoke(cli, ["rules", "list", "--store", store_url, "--json"]).output)
    assert [(x["kind"], x["match"], x["weight"], x["audience"], x["starts_at"]) for x in listed] == [
        ("boost", {"brand": "acme"}, 0.5, ["u1", "u2"], "2026-12-01T00:00:00+00:00")]
    assert "boost brand=acme by 0.5" in runner.invoke(cli, ["rules", "list", "--store", store_url]).output
    bad = runner.invoke(cli, ["rules", "add", "pin", "--store", store_url, "--match", "items=a"])
    assert bad.exit_code == 1 and "position" in bad.output
    rule_id = listed[0]["rule_id"]
    assert runner.invoke(cli, ["rules", "remove", str(rule_id), "--store", store_url]).exit_code == 0
    assert runner.invoke(cli, ["rules", "remove", str(rule_id), "--store", store_url]).exit_code == 1
    with EventStore(StoreConfig(store_url)) as s:
        entries = [e for e in audit_entries(s) if e.action.startswith("rule_")]
    assert [(e.action, e.outcome) for e in entries] == [("rule_add", "ok"), ("rule_add", "failed"),
                                                        ("rule_remove", "ok")]
    assert all(e.actor.startswith("cli") for e in entries)
    assert entries[0].detail["audience"] == "2 user ids"  # no customer ids in the audit log


def test_attribute_rules_see_a_catalog_change_at_once(client):
    add(client, kind="exclude", match={"unavailable": True})
    assert ids(client.get("/v1/users/u1/recommendations", params={"k": 3}).json()) == ["d", "e", "f"]
    r = client.put("/v1/catalog/items", json=[{"item_id": "d", "title": "Dish", "available": False}])
    assert r.status_code == 200, r.text
    body = client.get("/v1/users/u1/recommendations", params={"k": 3}).json()
    assert ids(body) == ["e", "f", "g"] and [m["item_id"] for m in body["rules"]] == ["d"]


def test_cli_adds_a_query_targeted_rule(store_url):  # noqa: F811
    runner = CliRunner()
    r = runner.invoke(cli, ["rules", "add", "bury", "--store", store_url, "--match", "tag=sale", "--weight", "1",
                            "--query", "Garden Hose", "--query", "hose"])
    assert r.exit_code == 0, r.output
    listed = json.loads(runner.invoke(cli, ["rules", "list", "--store", store_url, "--json"]).output)
    assert [x["queries"] for x in listed] == [["garden hose", "hose"]]
    table = runner.invoke(cli, ["rules", "list", "--store", store_url], env={"COLUMNS": "200"}).output
    assert "bury tag=sale by 1 in searches for 'garden hose' | 'hose'" in table
