"""Diversity and new-product slots on the recommendation routes, over the tiny shop of
test_api (kitchen a-d, garden e-h; h unavailable): request options, provenance, 422s,
the server default from the environment, and the order with business rules."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from shopformer.rank.exposure import ExposureConfig  # noqa: E402

from test_api import AUTH, ids, make_client, shop, store_url  # noqa: E402, F401 - fixtures

SESSION = "/v1/recommendations/session"


@pytest.fixture
def client(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], sync_s=0) as c:
        yield c


def test_category_cap_gives_distinct_categories_with_provenance(client):
    plain = client.post(SESSION, json={"item_ids": ["e"], "k": 3}).json()
    assert ids(plain) == ["f", "g", "h"] and plain["reranked"] == []  # garden, garden, garden
    body = client.post(SESSION, json={"item_ids": ["e"], "k": 3, "rerank": {"max_per_category": 1}}).json()
    # leaf categories: f garden, then the kitchen items (a, b, d: kitchen; c: kitchen > cups)
    assert ids(body) == ["f", "a", "c"]
    assert {(m["item_id"], m["step"], m["to_rank"]) for m in body["reranked"] if m["to_rank"] is None} == {
        ("g", "category_cap", None), ("h", "category_cap", None)}
    assert {m["item_id"] for m in body["reranked"] if m["to_rank"] is not None} == {"a", "c"}


def test_user_route_takes_query_options_and_refuses_bad_ones(client):
    body = client.get("/v1/users/u4/recommendations", params={"k": 2, "max_per_category": 1}).json()
    assert len({"garden" if i in "efgh" else "kitchen" for i in ids(body)}) == 2
    bad = client.get("/v1/users/u1/recommendations", params={"diversity": 1.5})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "diversity"]
    bad = client.get("/v1/users/u1/recommendations", params={"new_item_policy": "random"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "new_item_policy"]
    # item-kNN has no item vectors: MMR is refused naming the field, not a 500
    bad = client.get("/v1/users/u1/recommendations", params={"diversity": 0.3})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "diversity"]
    assert "item vectors" in bad.json()["detail"][0]["msg"]
    bad = client.post(SESSION, json={"item_ids": ["a"], "rerank": {"diversity": 0.3}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "rerank", "diversity"]


def tag_new(client, item: str) -> None:
    row = client.get(f"/v1/items/{item}").json()["product"]
    row = {k: v for k, v in row.items() if v is not None}
    r = client.put("/v1/catalog/items", json=[{**row, "tags": ["new"]}], headers=AUTH)
    assert r.status_code == 200, r.text


def test_a_new_item_gets_the_reserved_slot(client):
    assert ids(client.get("/v1/users/u1/recommendations", params={"k": 2}).json()) == ["d", "e"]
    tag_new(client, "g")
    body = client.get("/v1/users/u1/recommendations", params={"k": 2, "new_item_slots": 1}).json()
    assert ids(body) == ["d", "g"]
    assert body["reranked"] == [{"item_id": "g", "step": "new_item_slot", "from_rank": 4, "to_rank": 2},
                                {"item_id": "e", "step": "new_item_slot", "from_rank": 2, "to_rank": None}]
    scores = {x["item_id"]: x["score"] for x in body["items"]}
    plain = {x["item_id"]: x["score"] for x in client.get("/v1/users/u1/recommendations", params={"k": 5}).json()["items"]}
    assert scores == {"d": plain["d"], "g": plain["g"]}  # each item keeps its own model score
    # the new item is in the history: nothing to reserve
    body = client.post(SESSION, json={"item_ids": ["g"], "k": 2, "rerank": {"new_item_slots": 1}}).json()
    assert "g" not in ids(body) and body["reranked"] == []


def test_server_default_from_settings_and_rules_still_win(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], sync_s=0, new_items=ExposureConfig(slots=1)) as c:
        tag_new(c, "g")
        assert ids(c.get("/v1/users/u1/recommendations", params={"k": 2}).json()) == ["d", "g"]
        # a request may turn the default off
        assert ids(c.get("/v1/users/u1/recommendations", params={"k": 2, "new_item_slots": 0}).json()) == ["d", "e"]
        r = c.post("/v1/admin/rules", json={"kind": "exclude", "match": {"items": ["g"]}})
        assert r.status_code == 201, r.text
        body = c.get("/v1/users/u1/recommendations", params={"k": 2}).json()
        assert "g" not in ids(body) and [m["effect"] for m in body["rules"]] == ["excluded"]
        # a boost applies to the re-ranked order: [d, e, g] then [f, h] before the rules;
        # f boosted by 1 ties d (ties keep that order) and pushes the reserved g out
        c.delete(f"/v1/admin/rules/{r.json()['rule_id']}")
        r = c.post("/v1/admin/rules", json={"kind": "boost", "match": {"items": ["f"]}, "weight": 1})
        assert r.status_code == 201, r.text
        body = c.get("/v1/users/u1/recommendations", params={"k": 3}).json()
        assert ids(body) == ["d", "f", "e"]
        assert [(m["item_id"], m["step"]) for m in body["reranked"]] == [("g", "new_item_slot"), ("f", "new_item_slot")]


@pytest.fixture(scope="module")
def vector_run(shop, tmp_path_factory):  # noqa: F811
    """A tiny SASRec over the same shop: a model with item vectors (MMR needs them)."""
    from shopformer.artifact import make_model
    from shopformer.dataset import DataConfig
    from shopformer.experiment import train_run

    folder = tmp_path_factory.mktemp("vectors") / "run"
    model = make_model("sasrec", {"arch.d_model": "16", "arch.n_heads": "1", "arch.max_len": "8",
                                  "train.epochs": "5", "train.batch_size": "8"})
    train_run(model, shop["data"], DataConfig(), folder, fit_on="all")
    return folder


def test_mmr_through_the_api_is_the_library_step_on_the_model_vectors(vector_run, store_url):  # noqa: F811
    import numpy as np

    from shopformer.artifact import load_run
    from shopformer.rank.diversity import DiversityConfig, diversify

    run = load_run(vector_run)
    table = run.model.similarity_table().detach().float().numpy().astype(np.float64)
    with make_client(store_url, vector_run, sync_s=0) as c:
        plain = c.post(SESSION, json={"item_ids": ["a", "b"], "k": 6}).json()
        cands, scores = ids(plain), [x["score"] for x in plain["items"]]
        vecs = table[run.items.encode(cands)]
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for d in (0.3, 1.0):
            want = diversify(DiversityConfig(diversity=d), cands, scores, 3, vecs)
            body = c.post(SESSION, json={"item_ids": ["a", "b"], "k": 3, "rerank": {"diversity": d}}).json()
            assert ids(body) == [cands[p] for p in want.order[:3]]
            assert [(m["item_id"], m["from_rank"], m["to_rank"]) for m in body["reranked"]] == [
                (s.item_id, s.from_rank, s.to_rank) for s in want.shifts]
            assert [x["score"] for x in body["items"]] == [scores[p] for p in want.order[:3]]
        # diversity 1: the second item is the candidate least like the first
        body = c.post(SESSION, json={"item_ids": ["a", "b"], "k": 2, "rerank": {"diversity": 1.0}}).json()
        sims = vecs @ vecs[0]
        assert ids(body) == [cands[0], cands[int(np.argmin(sims))]]
