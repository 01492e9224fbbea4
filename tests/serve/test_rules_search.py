"""Business rules on search answers (GET /v1/search): the same rule step as the
recommendations, on more candidates than k; a pin never makes a product match."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("tantivy")

from test_api import shop, store_url  # noqa: E402, F401 - fixtures
from test_search_api import client, ids  # noqa: E402, F401 - fixtures


def test_search_answers_apply_the_rules_with_provenance(client):  # noqa: F811
    before = client.get("/v1/search", params={"q": "garden", "k": 3}).json()
    assert ids(before) == ["e", "f", "g"] and before["rules"] == []
    everything = ids(client.get("/v1/search", params={"q": "garden", "k": 10}).json())
    assert set(everything) == {"e", "f", "g", "h"}
    out = client.post("/v1/admin/rules", json={"kind": "exclude", "match": {"items": ["e"]}}).json()["rule_id"]
    pin = client.post("/v1/admin/rules", json={"kind": "pin", "match": {"items": [everything[-1]]},
                                                "position": 1}).json()["rule_id"]
    client.post("/v1/admin/rules", json={"kind": "pin", "match": {"items": ["a"]}, "position": 2})  # no match
    body = client.get("/v1/search", params={"q": "garden", "k": 3}).json()
    assert ids(body) == [everything[-1], "f", "g"]  # e excluded, k still filled, "a" not inserted
    assert body["rules"] == [
        {"rule_id": pin, "item_id": everything[-1], "effect": "pinned", "from_rank": 4, "to_rank": 1},
        {"rule_id": out, "item_id": "e", "effect": "excluded", "from_rank": 1, "to_rank": None}]


def test_a_query_targeted_rule_moves_only_the_searches_it_names(client):  # noqa: F811
    everything = ids(client.get("/v1/search", params={"q": "garden", "k": 10}).json())
    last = everything[-1]
    similar = client.get(f"/v1/items/{everything[0]}/similar", params={"k": 3}).json()
    assert similar["rules"] == [] and ids(similar)[0] != last
    added = client.post("/v1/admin/rules", json={"kind": "pin", "match": {"items": [last]}, "position": 1,
                                                  "queries": ["Garden"]})
    assert added.status_code == 201 and added.json()["queries"] == ["garden"]
    body = client.get("/v1/search", params={"q": "garden", "k": 3}).json()
    assert ids(body)[0] == last and body["rules"][0]["rule_id"] == added.json()["rule_id"]
    # answers without the phrase are untouched (an unconditional pin would insert it here)
    assert ids(client.get("/v1/search", params={"q": "hammer garden", "k": 3}).json())[0] == last  # holds "garden"
    again = client.get(f"/v1/items/{everything[0]}/similar", params={"k": 3}).json()
    assert ids(again) == ids(similar) and again["rules"] == []
    bad = client.post("/v1/admin/rules", json={"kind": "boost", "match": {"brand": "x"}, "weight": 1,
                                                "queries": ["!!"]})
    assert bad.status_code == 400 and "queries" in bad.json()["detail"]
