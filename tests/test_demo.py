"""The demo's store and serving wiring, on a tiny shop (the full demo trains every model
on the bundled sample, too slow for the suite): the store import, the printed curl
commands (run against the app), the API key, early failures."""

from __future__ import annotations

import io
import shlex
import socket
from pathlib import Path

import pytest
from rich.console import Console

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer import demo  # noqa: E402
from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402

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
    return {"root": root, "data": root / "data", "run": root / "run"}


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
