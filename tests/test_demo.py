"""The demo's store and serving wiring, on a tiny shop (the full demo trains every model
on the bundled sample, too slow for the suite): the store import, the printed top-10
lists (the API's own answers), the printed curl commands (run against the app), the API
key, early failures, the progress bars and the results table; and the whole flow on the
bundled sample with the baselines only."""

from __future__ import annotations

import io
import os
import shlex
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer import demo  # noqa: E402
from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig, load_events, prepare  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.train.loop import EpochRecord, TrainHistory, progress_into  # noqa: E402

SEQUENCES = "u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\nu5 e f h\nu6 f g h\nu7 a c d\n"
CATALOG = "item_id,title\na,Apron\nb,Bowl\nc,Cup\nd,Dish\ne,Edger\nf,Fork\ng,Gloves\nh,Hose\n"


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("demo")
    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    ingest(root / "seq.txt", "sequence", root / "data", catalog=root / "catalog.csv")
    train_run(make_model("itemknn", {"shrink": "0"}), root / "data", DataConfig(), root / "run", fit_on="all")
    tiny = {"arch.d_model": "16", "arch.max_len": "4", "train.epochs": "3", "train.batch_size": "4"}
    train_run(make_model("sasrec", tiny), root / "data", DataConfig(), root / "run-sasrec", fit_on="all")
    return {"root": root, "data": root / "data", "run": root / "run", "runs": {"itemknn": root / "run",
                                                                            "sasrec": root / "run-sasrec"}}


def test_import_store_once(shop, tmp_path):
    con, out = console()
    url = demo.import_store(tmp_path, shop["data"], con)
    assert url == f"sqlite:///{(tmp_path / demo.STORE_FILE).resolve()}"
    assert "imported 21 events and 8 products" in out.getvalue()
    assert demo.import_store(tmp_path, shop["data"], con) == url
    assert "already holds 21 events: not importing again" in out.getvalue()


def _request(client: TestClient, command: str):
    """Run one printed curl command against the app (method, URL, headers, body)."""
    args = shlex.split(command)
    assert args[0] == "curl"
    method, headers, body, url = "GET", {}, None, None
    it = iter(args[1:])
    for a in it:
        if a == "-X":
            method = next(it)
        elif a == "-H":
            name, _, value = next(it).partition(": ")
            headers[name] = value
        elif a == "-d":
            body = next(it)
        elif not a.startswith("-"):
            url = a
    return client.request(method, url, headers=headers, content=body)


def test_curl_examples_work_against_the_api(shop, tmp_path):
    url = demo.import_store(tmp_path, shop["data"], console()[0])
    examples = demo.curl_examples("http://testserver", "k3y", "u1", ["a", "b"], "d")
    assert len(examples) == 7
    settings = ServeSettings(store_url=url, run=shop["run"], api_key="k3y")
    with TestClient(create_app(settings)) as client:  # no default key: each example carries what it needs
        assert client.app.state.search.wait(120)
        before = client.get("/v1/users/u1/recommendations", headers={"X-API-Key": "k3y"}).json()["items"]
        assert "d" in [x["item_id"] for x in before]
        for comment, command in examples:
            r = _request(client, command)
            assert r.status_code in (200, 201), (comment, r.text)
        assert "X-API-Key: k3y" in examples[3][1] and "X-API-Key: k3y" in examples[0][1]
        after = client.get("/v1/users/u1/recommendations", headers={"X-API-Key": "k3y"}).json()["items"]
        assert "d" not in [x["item_id"] for x in after]  # the posted event changed the answer


def test_serve_demo_generates_and_prints_a_key(shop, monkeypatch):
    monkeypatch.delenv("SHOPFORMER_API_KEY", raising=False)
    seen = {}
    monkeypatch.setattr("shopformer.serve.app.serve", lambda s, h, p: seen.update(settings=s, host=h, port=p))
    result = {"best": "itemknn", "run_dir": shop["run"], "store_url": "sqlite:///x.db", "user": "u1",
              "items": ["a", "b"], "next_item": "d"}
    con, out = console()
    demo.serve_demo(result, ServeSettings(), con, "127.0.0.1", 8123)
    s = seen["settings"]
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8123)
    assert s.run == shop["run"] and s.store_url == "sqlite:///x.db" and len(s.api_key) >= 20
    text = out.getvalue()
    assert "http://127.0.0.1:8123" in text and s.api_key in text
    assert f"X-API-Key: {s.api_key}" in text and "/v1/users/u1/recommendations" in text

    monkeypatch.setenv("SHOPFORMER_API_KEY", "from-env")
    con, out = console()
    demo.serve_demo(result, ServeSettings(), con, "127.0.0.1", 8123)
    assert seen["settings"].api_key == "from-env"
    assert "from-env" not in out.getvalue() and "X-API-Key: $SHOPFORMER_API_KEY" in out.getvalue()


def test_serving_problems_are_reported_before_training(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "train_demo", lambda *a, **k: pytest.fail("trained before checking"))
    monkeypatch.setenv("SHOPFORMER_INDEX", "annoy")
    with pytest.raises(demo.DemoError, match="SHOPFORMER_INDEX"):
        demo.run_demo(tmp_path, console()[0])
    monkeypatch.delenv("SHOPFORMER_INDEX")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(demo.DemoError, match=f"127.0.0.1:{port}.*--port"):
            demo.run_demo(tmp_path, console()[0], port=port)


def test_no_serve_skips_the_server(monkeypatch, tmp_path, shop):
    monkeypatch.setattr(demo, "train_demo", lambda *a, **k: {"data_dir": shop["data"]})
    monkeypatch.setattr(demo, "serve_demo", lambda *a, **k: pytest.fail("served with serve=False"))
    result = demo.run_demo(tmp_path, console()[0], serve=False)
    assert result["store_url"].endswith(demo.STORE_FILE) and Path(tmp_path / demo.STORE_FILE).exists()


def _printed_items(text: str, user: str) -> list[str]:
    """The item column of ``user``'s printed top-10 table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if f"/v1/users/{user}/recommendations" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("└"))
    rows = [line.split("│") for line in lines[start:end] if line.startswith("│")]
    return [r[2].strip() for r in rows if r[1].strip().isdigit()]


@pytest.mark.parametrize("model", ["itemknn", "sasrec"])
@pytest.mark.parametrize("history_limit", [200, 2])
def test_printed_top10_is_the_api_answer(shop, tmp_path, model, history_limit):
    """The demo prints what GET /v1/users/{id}/recommendations answers: same latest-events
    window, same model (the dot-product one through the FAISS index), same exclusions."""
    url = demo.import_store(tmp_path, shop["data"], console()[0])
    run = shop["runs"][model]
    settings = ServeSettings(store_url=url, run=run, api_key="k3y", search=False, history_limit=history_limit)
    customers = ["u1", "u3", "u6"]
    con, out = console()
    shown = demo.show_customers({"store_url": url, "run_dir": run, "customers": customers}, settings, con, 3)
    text = out.getvalue()
    with TestClient(create_app(settings), headers={"X-API-Key": "k3y"}) as client:
        for user in customers:
            api = client.get(f"/v1/users/{user}/recommendations?k=10").json()
            items = [x["item_id"] for x in api["items"]]
            assert items and shown["shown"][user] == items == _printed_items(text, user)
            assert f"the latest {min(3, history_limit)} give {api['history_length']} products" in text
    assert shown["user"] == "u1" and shown["next_item"] == shown["shown"]["u1"][0]
    if history_limit == 2:  # u1 bought a, b, c: the API reads b, c, so a may come back
        assert shown["items"] == ["b", "c"]


def test_one_named_bar_per_model_and_no_epoch_lines(shop):
    data, split = prepare(load_events(shop["data"]), DataConfig())
    con, out = console()
    with demo._bars(con) as bars:
        for name in ("popular", "sasrec"):
            task = bars.add_task(name, total=1, status="fitting")
            model = make_model(name, {"train.epochs": "3", "arch.d_model": "16"} if name == "sasrec" else None)
            with progress_into(bars, task):  # every sequence trains (the split leaves one event each)
                model.fit(data.sequences, data.n_items, valid=split.valid)
            if name == "popular":
                bars.update(task, completed=1, status="valid 0.1234")
    text = out.getvalue()
    assert "epoch 1:" not in text and "batches" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert any(line.startswith("popular ") and "valid 0.1234" in line for line in lines)
    assert any(line.startswith("sasrec ") and "epochs" in line and "best" in line for line in lines)


def test_results_table_fits_80_columns():
    def records(split: str) -> list[dict]:
        return [{"model": m, "split": split, "fit_seconds": 123.4,
                 "metrics": {"HR@10": 0.1234, "NDCG@10": 0.0567, "MRR": 0.0456}}
                for m in ("popular", "itemknn", "ease", "sasrec", "bert4rec")]

    con = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    con.print(demo.results_table(records("valid"), records("test"), "bert4rec"))
    text = con.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "bert4rec *" in text and "NDCG@10" in text


def _trained(epochs: int, best: int, stopped: str) -> SimpleNamespace:
    records = [EpochRecord(e, e, e, e, 1.0, 0.1) for e in range(1, epochs + 1)]
    return SimpleNamespace(history=TrainHistory(records=records, best_epoch=best, stopped=stopped))


def test_a_baseline_win_is_explained():
    valid = [{"model": m, "metrics": {"NDCG@10": v}} for m, v in (("ease", 0.06), ("sasrec", 0.04), ("bert4rec", 0.03))]
    counts = {"users": 841, "items": 2675, "interactions": 75971}
    models = {"sasrec": (_trained(30, 30, "epochs done"), {}), "bert4rec": (_trained(12, 3, "time limit 60 s"), {})}
    why = demo.baseline_won("ease", valid, models, counts)
    assert why.startswith("A baseline won: ease scored validation NDCG@10 0.0600, above sasrec 0.0400, bert4rec 0.0300")
    assert "sasrec was still improving when its 30 epochs ended" in why
    assert "bert4rec stopped at its time limit 60 s after 12 epochs" in why and "841 customers" in why
    models["sasrec"] = (_trained(20, 12, "early stop: no better validation for 5 evaluations"), {})
    assert "sasrec peaked at epoch 12 of 20" in demo.baseline_won("ease", valid, models, counts)
    assert demo.baseline_won("sasrec", valid, models, counts) is None


def test_demo_flow_on_the_sample_prints_the_api_answers(tmp_path, monkeypatch):
    """The whole --no-serve flow on the bundled sample, baselines only (the Transformers
    take a minute or two): the printed lists are the API's answers for those customers."""
    monkeypatch.setattr(demo, "DEMO_MODELS", ("popular", "itemknn"))
    monkeypatch.setattr(demo, "_show_searches", lambda *a: None)  # the search index needs the text encoder
    for name in [k for k in os.environ if k.startswith("SHOPFORMER_")]:
        monkeypatch.delenv(name)
    con, out = console()
    result = demo.run_demo(tmp_path, con, users_to_show=2, serve=False)
    text = out.getvalue()
    assert result["best"] == "itemknn" and "chosen on validation NDCG@10: itemknn" in text
    settings = ServeSettings(store_url=result["store_url"], run=result["run_dir"], api_key="k3y", search=False)
    with TestClient(create_app(settings), headers={"X-API-Key": "k3y"}) as client:
        for user in result["customers"][:2]:
            api = client.get(f"/v1/users/{user}/recommendations?k=10").json()
            assert result["shown"][user] == [x["item_id"] for x in api["items"]] == _printed_items(text, user)
            assert set(api["ignored_event_types"]) <= {"cancel"}  # what the models do not read
