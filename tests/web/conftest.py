"""Shared fixtures of the web tests (storefront and console).

* ``web_shop``: a small shop (titles, categories, brands, prices, one image URL) ingested
  and fitted with item-kNN (fast, deterministic, explains);
* ``serve_app(settings)``: the real app (``create_app``) under uvicorn on a free loopback
  port in a thread, ready (model loaded, search index built) when it yields its URL;
* ``live_server``: that for ``web_shop`` with no key and unauthenticated writes on (the
  local demo's mode), one per module;
* ``browser`` (Debian's Chromium through Playwright, skipped with a reason when either
  is absent), ``page`` (a fresh context per test, console errors collected in
  ``page_errors``), ``artifacts`` (the folder screenshots go to, printed).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from shopformer.serve import ServeSettings, create_app  # noqa: E402

CHROMIUM = Path(os.environ.get("SHOPFORMER_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

#: a real product image (an inline SVG) for one product; the others get placeholders
PEN_IMAGE = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCA0MCAzMCI+PHJlY3Qgd2lkdGg9IjQwIiBoZWlnaHQ9IjMwIiBmaWxsPSIjZjRlZmU2Ii8+PHBhdGggZD0iTTggMjQgMzAgNmwzIDMtMjIgMTgtNSAxeiIgZmlsbD0iIzFiM2E1YyIvPjwvc3ZnPg=="

# Three clusters of purchases: kitchen (k*), garden (g*) and office (o*).
SEQUENCES = """\
u1 k1 k2 k3
u2 k1 k2 k4
u3 k2 k3 k4 k5
u4 g1 g2 g3
u5 g1 g2 g4
u6 g2 g3 g4 g5
u7 k1 k3 k4
u8 o1 o2 o3
u9 o1 o2 o4
u10 o2 o3 o4 o5
u11 g1 g3 g5
u12 o1 o3 o5
"""
CATALOG = """\
item_id,title,price,categories,brand,available,image_uri,currency
k1,Linen Apron,12,kitchen|textiles,Acme,true,,USD
k2,Stoneware Bowl,18,kitchen|tableware,Acme,true,,USD
k3,Espresso Cup,9,kitchen|tableware,Zeta,true,,USD
k4,Serving Dish,24,kitchen|tableware,Acme,true,,USD
k5,Chef Knife,45,kitchen|tools,Zeta,true,,USD
g1,Lawn Edger,35,garden|tools,Gro,true,,USD
g2,Hand Fork,11,garden|tools,Gro,true,,USD
g3,Garden Gloves,8,garden|textiles,Gro,true,,USD
g4,Watering Can,16,garden,Verde,true,,USD
g5,Garden Hose,29,garden,Verde,false,,USD
o1,Desk Lamp,32,office|lighting,Lumo,true,,USD
o2,Notebook A5,5,office|paper,Papyr,true,,USD
o3,Fountain Pen,27,office|writing,Papyr,true,"{PEN}",USD
o4,Paper Tray,14,office,Lumo,true,,USD
o5,Stapler,13,office,Lumo,true,,USD
""".replace("{PEN}", PEN_IMAGE)


@pytest.fixture(scope="session")
def web_shop(tmp_path_factory) -> dict[str, Path]:
    """The shop's data folder and an item-kNN run fitted on all of it."""
    from shopformer.artifact import make_model
    from shopformer.dataset import DataConfig
    from shopformer.experiment import train_run
    from shopformer.ingest.api import ingest

    root = tmp_path_factory.mktemp("webshop")
    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    train_run(make_model("itemknn", {"shrink": "0"}), data, DataConfig(), root / "run", fit_on="all")
    return {"root": root, "data": data, "run": root / "run"}


def new_store(web_shop: dict[str, Path], folder: Path) -> str:
    """A fresh SQLite store in ``folder`` holding the shop's events and catalog."""
    from shopformer.store import EventStore, StoreConfig, import_folder

    url = f"sqlite:///{folder / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, web_shop["data"])
    return url


def shop_settings(web_shop: dict[str, Path], folder: Path, **kw) -> ServeSettings:
    """Settings for ``web_shop`` on a fresh store: open demo mode unless ``kw`` says
    otherwise (``api_key=...``); lexical search only (no text model to load)."""
    base = ServeSettings(store_url=new_store(web_shop, folder), run=web_shop["run"], api_key=None,
                         allow_unauthenticated_writes=True, search_semantic=False, search_dir=folder / "search",
                         sync_s=0, cache_ttl_s=60)
    return replace(base, **kw) if kw else base


@contextmanager
def serve_app(settings: ServeSettings, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``create_app(settings)`` under uvicorn on a free loopback port in a thread;
    yield its base URL once ``/health`` answers and the search index is built."""
    import uvicorn

    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="web-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        search = app.state.search
        if search is not None and not search.wait(max(0.0, deadline - time.monotonic())):
            raise RuntimeError("the search index was not built in time")
        with urllib.request.urlopen(url + "/health", timeout=10) as r:
            assert r.status == 200
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def live_server(web_shop, tmp_path_factory) -> Iterator[str]:
    """The shop served in the local demo's mode (no key, unauthenticated writes on)."""
    with serve_app(shop_settings(web_shop, tmp_path_factory.mktemp("live"))) as url:
        yield url


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and measurements go (out of git): ``SHOPFORMER_WEB_ARTIFACTS``
    or a folder under the system's temp dir; printed so CI can collect it."""
    folder = Path(os.environ.get("SHOPFORMER_WEB_ARTIFACTS") or Path(tempfile.gettempdir()) / "shopformer-web-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb test artifacts (screenshots, timings): {folder}")
    return folder


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; skips with a reason when either is absent."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    path = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Console errors and uncaught page errors of ``page``, in order."""
    return []


@pytest.fixture
def page(browser, page_errors):
    """A fresh browser context at desktop size; console errors go to ``page_errors``."""
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    opened.on("console", lambda m: page_errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: page_errors.append(f"pageerror: {e}"))
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        context.close()
