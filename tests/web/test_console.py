"""The operator console (/console): who may see it (admin keys only, through a login form
and an HttpOnly cookie; open in the local demo's mode), CSRF on its POSTs, the audited
reload, the numbers it computes, and the page in Chromium (login, model and metrics,
the live rate moving with API requests, reload, a customer's heatmap, no console
errors, desktop and phone screenshots)."""

from __future__ import annotations

import math
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import DESKTOP, PHONE, serve_app, shop_settings  # noqa: E402
from shopformer.serve import create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402
from shopformer.store.access import audit_entries, create_key  # noqa: E402
from shopformer.web import console  # noqa: E402

KEY = "console-test-env-key"  # SHOPFORMER_API_KEY: every scope
SAME = {"Origin": "http://testserver"}


@pytest.fixture(scope="module")
def console_shop(web_shop, tmp_path_factory) -> dict[str, Path]:
    """A small SASRec run (it has a training curve) beside a results file holding it and
    two baselines on validation and test, as ``shopformer demo`` lays them out
    (``runs/<model>`` and ``results/*.json``)."""
    from shopformer.artifact import make_model
    from shopformer.dataset import DataConfig, load_events, prepare
    from shopformer.evaluate.protocol import EvalConfig
    from shopformer.evaluate.report import write_results
    from shopformer.experiment import evaluate_model, fit, train_run

    root = tmp_path_factory.mktemp("console")
    cfg = DataConfig()
    run = train_run(make_model("sasrec", {"train.epochs": "5", "arch.d_model": "16", "arch.n_layers": "1",
                                          "train.batch_size": "4", "train.warmup_steps": "2"}),
                    web_shop["data"], cfg, root / "runs" / "sasrec")
    data, split = prepare(load_events(web_shop["data"]), cfg)
    ctx = {"dataset": str(web_shop["data"].resolve())}
    records = []
    for name in ("popular", "itemknn"):
        model = make_model(name)
        fit(model, data, split)
        records += [evaluate_model(model, data, split, s, EvalConfig(), ctx, progress=False) for s in ("valid", "test")]
    records += [evaluate_model(run.model, data, split, s, EvalConfig(), ctx, progress=False) for s in ("valid", "test")]
    write_results(records, root / "results" / "console.json")
    return {"data": web_shop["data"], "run": root / "runs" / "sasrec", "records": records}


def settings_for(shop: dict, folder: Path, **kw):
    return shop_settings(shop, folder, search=False, **kw)


# -- pure parts --------------------------------------------------------------------------
def test_quantile_interpolates_inside_the_bucket_as_prometheus_does():
    bounds = (0.01, 0.1, 1.0, math.inf)
    # 10 requests: 4 under 10 ms, 4 in (10, 100] ms, 2 in (100 ms, 1 s]
    cumulative = (4.0, 8.0, 10.0, 10.0)
    assert console.quantile(0.5, bounds, cumulative) == pytest.approx(0.01 + 0.09 * (5 - 4) / 4)
    assert console.quantile(0.95, bounds, cumulative) == pytest.approx(0.1 + 0.9 * (9.5 - 8) / 2)
    assert console.quantile(0.2, bounds, cumulative) == pytest.approx(0.01 * 2 / 4)
    assert console.quantile(0.99, (0.01, math.inf), (1.0, 10.0)) == 0.01  # in +Inf: the last finite bound
    assert console.quantile(0.5, bounds, (0.0, 0.0, 0.0, 0.0)) is None


def test_live_rows_compare_with_the_snapshot_a_window_ago():
    bounds = (0.01, 0.1, math.inf)
    key = ("GET", "/v1/items/{item_id}")
    own = ("GET", "/console/live")
    old = console.Snapshot(100.0, {key: (10.0, (10.0, 10.0, 10.0)), own: (3.0, (3.0, 3.0, 3.0))}, bounds, {})
    new = console.Snapshot(110.0, {key: (30.0, (10.0, 30.0, 30.0)), own: (8.0, (8.0, 8.0, 8.0))}, bounds, {key: 2.0})
    window = console.LiveWindow(window_s=10)
    assert window.baseline(old) is None  # nothing to compare with yet
    assert window.baseline(new) is old
    rows = console.live_rows(new, old)
    assert [r["route"] for r in rows] == ["GET /v1/items/{item_id}"]  # the console's own polls left out
    row = rows[0]
    assert row["rate"] == 2.0 and row["total"] == 30 and row["errors"] == 2
    # the 20 new requests all took 10-100 ms: p50 halfway through that bucket
    assert row["p50_ms"] == pytest.approx(55.0) and row["p95_ms"] == pytest.approx(95.5)


def test_training_curve_and_results_are_read_from_the_run_and_beside_it(console_shop):
    curve = console.training_curve(console_shop["run"])
    assert curve is not None and len(curve["records"]) == 5
    assert curve["loss"]["points"].count(",") == 5 and curve["valid"]["best"] is not None
    files = console.find_results(console_shop["run"])
    assert [Path(f["file"]).name for f in files] == ["console.json"]
    assert {r["model"] for r in files[0]["records"]} == {"popular", "itemknn", "sasrec"}
    assert console.training_curve(console_shop["run"].parent / "nothing") is None


# -- access --------------------------------------------------------------------------------
def test_console_needs_an_admin_key_kept_in_an_httponly_cookie(console_shop, tmp_path):
    app = create_app(settings_for(console_shop, tmp_path, api_key=KEY, allow_unauthenticated_writes=False))
    with TestClient(app) as c:
        store = app.state.service.store
        _, read_key = create_key(store, "analyst", ["read", "write"])
        admin, admin_key = create_key(store, "operator", ["admin"])

        r = c.get("/console", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        r = c.get("/console/login")
        assert r.status_code == 200 and 'name="api_key"' in r.text and 'type="password"' in r.text
        assert c.get("/console/live").status_code == 401
        assert c.get("/console/explain", params={"user_id": "u1"}).status_code == 401
        assert c.post("/console/reload", headers={**SAME, "Accept": "application/json"}).status_code == 401

        r = c.post("/console/login", data={"api_key": read_key}, headers=SAME, follow_redirects=False)
        assert r.status_code == 403 and "needs an admin key" in r.text and "set-cookie" not in r.headers
        r = c.post("/console/login", data={"api_key": "sfk_not_a_key"}, headers=SAME, follow_redirects=False)
        assert r.status_code == 401 and "not valid" in r.text
        r = c.post("/console/login", data={"api_key": admin_key}, follow_redirects=False)  # no Origin: CSRF
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = c.post("/console/login", data={"api_key": admin_key}, headers={"Origin": "http://evil.example"},
                   follow_redirects=False)
        assert r.status_code == 403
        assert not c.cookies

        r = c.post("/console/login", data={"api_key": admin_key}, headers=SAME, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        page = c.get("/console")
        assert page.status_code == 200
        assert "sasrec" in page.text and "NDCG@10" in page.text and "itemknn" in page.text
        assert admin_key not in page.text and KEY not in page.text  # never in the page source
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert c.get("/console/live").status_code == 200

        before = len(audit_entries(store, action="reload"))
        for origin in (None, "http://evil.example", "null"):
            headers = {"Accept": "application/json", **({"Origin": origin} if origin else {})}
            r = c.post("/console/reload", headers=headers)
            assert r.status_code == 403 and "cross-site" in r.json()["detail"], origin
        assert len(audit_entries(store, action="reload")) == before  # refused before anything ran
        r = c.post("/console/reload", headers={"Referer": "http://testserver/console", "Accept": "application/json"})
        assert r.status_code == 200, r.text  # a browser that sends only a Referer
        r = c.post("/console/reload", headers={**SAME, "Accept": "application/json"})
        assert r.status_code == 200 and r.json()["model"]["name"] == "sasrec"
        entries = audit_entries(store, action="reload")
        assert len(entries) == before + 2
        assert entries[-1].actor == f"key:{admin.key_id} (operator)" and entries[-1].outcome == "ok"
        assert entries[-1].target == str(console_shop["run"])
        assert [e.actor for e in audit_entries(store, action="console-login")] == [f"key:{admin.key_id} (operator)"]
        # a plain form post (no script) is redirected back to the console
        r = c.post("/console/reload", headers=SAME, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console?reloaded=sasrec-")

        # revoked through the API: out at once (other processes: within SHOPFORMER_SYNC_S)
        assert c.delete(f"/v1/admin/keys/{admin.key_id}", headers={"X-API-Key": KEY}).status_code == 200
        r = c.get("/console", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        assert c.post("/console/reload", headers={**SAME, "Accept": "application/json"}).status_code == 403


def test_console_is_open_in_demo_mode_and_closed_without_keys_or_demo_mode(console_shop, tmp_path):
    with TestClient(create_app(settings_for(console_shop, tmp_path))) as c:  # no key, unauthenticated writes on
        r = c.get("/console", params={"user_id": "u3"})
        assert r.status_code == 200 and "Sign out" not in r.text
        assert 'id="heatmap"' in r.text and "Chef Knife" in r.text  # u3 bought k2 k3 k4 k5
        assert c.get("/console/login", follow_redirects=False).status_code == 303
        r = c.post("/console/reload", headers={**SAME, "Accept": "application/json"})
        assert r.status_code == 200
        assert c.post("/console/reload", headers={"Origin": "http://evil.example"}).status_code == 403
    closed = tmp_path / "closed"
    closed.mkdir()
    with TestClient(create_app(settings_for(console_shop, closed, allow_unauthenticated_writes=False))) as c:
        r = c.get("/console")
        assert r.status_code == 503 and "shopformer keys create" in r.text


# -- the page in a browser -----------------------------------------------------------------
def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status


def test_console_in_chromium(console_shop, tmp_path, browser, page, page_errors, artifacts):
    settings = settings_for(console_shop, tmp_path, api_key=KEY, allow_unauthenticated_writes=False)
    with serve_app(settings) as url:
        page.goto(url + "/console")
        assert page.url.endswith("/console/login")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.get_by_label("Admin API key").fill(KEY)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(url + "/console")
        assert page.locator("#model-name").inner_text() == "sasrec"
        served = page.locator("#served-metrics")
        assert "NDCG@10" in served.inner_text() and "validation" in served.inner_text()
        assert page.locator("#comparison tbody tr").count() == 6  # 3 models x 2 splits
        assert page.locator("svg.chart-valid polyline").count() == 1
        assert KEY not in page.content()

        # the live rate moves once the API is used
        for _ in range(8):
            assert _get(url + "/v1/items/k1/similar") == 200
        rate = page.locator('tr[data-route="GET /v1/items/{item_id}/similar"] td.rate')
        page.wait_for_function(
            """() => { const c = document.querySelector('tr[data-route="GET /v1/items/{item_id}/similar"] td.rate');
                       return c && parseFloat(c.textContent) > 0; }""", timeout=10_000)
        assert float(rate.inner_text()) > 0

        # reload through the button (a fetch POST from this origin), audited
        page.get_by_role("button", name="Reload model").click()
        status = page.locator("#reload-status")
        page.wait_for_function("() => document.getElementById('reload-status').textContent.startsWith('Reloaded')")
        assert "now serving sasrec-" in status.inner_text()
        with EventStore(StoreConfig(settings.store_url)) as store:
            reloads = audit_entries(store, action="reload")
        assert reloads and reloads[-1].actor == "env-key" and reloads[-1].client == "127.0.0.1"

        # one customer's heatmap, asked for from the keyboard
        page.get_by_label("Customer id").fill("u3")
        page.get_by_label("Customer id").press("Enter")
        page.wait_for_selector("#heatmap")
        assert page.locator("#heatmap tbody tr").count() >= 3  # u3's history events
        assert page.locator("#heatmap td").count() >= 3 * 5
        assert page.evaluate("document.activeElement.id") == "heatmap-title"
        assert "user_id=u3" in page.url

        page.reload()  # the audit table shows the reload and the login
        audit_text = page.locator("#audit-table").inner_text()
        assert "reload" in audit_text and "console-login" in audit_text
        page.wait_for_selector("#heatmap")  # rendered by the server from ?user_id=
        desktop = artifacts / "console_desktop.png"
        page.screenshot(path=str(desktop), full_page=True)

        page.set_viewport_size(PHONE)
        page.wait_for_timeout(200)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        phone = artifacts / "console_phone.png"
        page.screenshot(path=str(phone), full_page=True)
        page.set_viewport_size(DESKTOP)

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(url + "/console/login")
    print(f"\nconsole screenshots: {desktop} {phone}")
    assert page_errors == [], page_errors
