"""POST /v1/answers through FastAPI's TestClient, with the synthetic Answerer (a hashing
encoder) put on the app; loading a folder from SHOPFORMER_ANSWERS_DIR with the real
model is in test_end_to_end.py."""

import pytest
from fastapi.testclient import TestClient

from shopformer.serve.app import create_app
from shopformer.serve.settings import ServeSettings

from .conftest import TOPICS


@pytest.fixture
def app(tmp_path):
    return create_app(ServeSettings(store_url=f"sqlite:///{tmp_path / 'store.db'}", search=False,
                                    storefront=False, console=False, impressions=None))


@pytest.fixture
def client(app, synthetic):
    app.state.answerer = synthetic["answerer"]
    with TestClient(app) as c:
        yield c


def _item(synthetic, answer: str) -> str:
    frame = synthetic["frame"]
    return frame.filter(frame["answer"] == answer)["item_id"][0]


def test_answers_rank_the_products_answers_and_say_yes(client, synthetic):
    item = _item(synthetic, TOPICS[1][1])
    r = client.post("/v1/answers", json={"item_id": item, "question": "is a water filter included?", "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == item and len(body["answers"]) == 2 and body["answers_stored"] == 5
    assert body["answers"][0]["answer"] == TOPICS[1][1]
    assert [a["rank"] for a in body["answers"]] == [1, 2]
    assert body["answers"][0]["score"] >= body["answers"][1]["score"]
    assert body["yes_no"]["answer"] == "yes" and 0.5 <= body["yes_no"]["confidence"] <= 1.0
    assert body["p_yes_no_question"] >= 0.5
    # whether it is unsure follows the answerer's threshold, and what answered is named
    answerer = synthetic["answerer"]
    assert body["yes_no"]["abstain"] == (body["yes_no"]["confidence"] < answerer.config.yesno.min_confidence)
    found = answerer.answer(item, "is a water filter included?", 2).yes_no
    assert body["yes_no"]["model"] == found.model and body["yes_no"]["abstain"] == found.abstain


def test_an_unsure_yes_no_answer_says_so(client, synthetic, monkeypatch):
    from dataclasses import replace

    answerer = synthetic["answerer"]
    strict = replace(answerer.config, yesno=replace(answerer.config.yesno, min_confidence=1.01))
    monkeypatch.setattr(answerer, "config", strict)
    item = _item(synthetic, TOPICS[1][1])
    body = client.post("/v1/answers", json={"item_id": item, "question": "is a water filter included?"}).json()
    assert body["yes_no"]["abstain"] is True


def test_an_open_question_gets_no_yes_no(client, synthetic):
    item = _item(synthetic, TOPICS[3][1])
    body = client.post("/v1/answers", json={"item_id": item, "question": "where is the reset button"}).json()
    assert body["yes_no"] is None and len(body["answers"]) == 5  # k defaults to 5
    assert body["answers"][0]["answer"] == TOPICS[3][1]


def test_unknown_item_is_404(client):
    r = client.post("/v1/answers", json={"item_id": "NOPE", "question": "is it loud"})
    assert r.status_code == 404 and "NOPE" in r.json()["detail"]


@pytest.mark.parametrize("body,field", [
    ({"item_id": "P000", "question": "   "}, "question"),
    ({"item_id": "P000"}, "question"),
    ({"question": "is it loud"}, "item_id"),
    ({"item_id": "P000", "question": "is it loud", "k": 0}, "k"),
    ({"item_id": "P000", "question": "is it loud", "k": 1000}, "k"),
    ({"item_id": "P000", "question": "is it loud", "colour": "red"}, "colour"),
])
def test_bad_input_is_422_naming_the_field(client, body, field):
    r = client.post("/v1/answers", json=body)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_without_an_answers_folder_the_route_says_how_to_make_one(app):
    with TestClient(app) as c:
        r = c.post("/v1/answers", json={"item_id": "P000", "question": "is it loud"})
    assert r.status_code == 404 and "SHOPFORMER_ANSWERS_DIR" in r.json()["detail"]


def test_a_folder_that_is_not_an_answers_folder_is_503(tmp_path):
    app = create_app(ServeSettings(store_url=f"sqlite:///{tmp_path / 'store.db'}", search=False, storefront=False,
                                   console=False, impressions=None, answers_dir=tmp_path / "empty"))
    with TestClient(app) as c:
        r = c.post("/v1/answers", json={"item_id": "P000", "question": "is it loud"})
    assert r.status_code == 503 and "answer build" in r.json()["detail"]


def test_settings_read_the_answers_folder_from_the_environment(tmp_path):
    s = ServeSettings.from_env({"SHOPFORMER_ANSWERS_DIR": str(tmp_path)})
    assert s.answers_dir == tmp_path
    assert ServeSettings.from_env({}).answers_dir is None
