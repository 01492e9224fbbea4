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
