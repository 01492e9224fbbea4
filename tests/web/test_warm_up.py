"""The pages' start-up warm-up runs in the background and /health says where it is,
so a readiness probe (or a benchmark) can wait for it on a large catalog."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

pytest.importorskip("httpx")

from conftest import shop_settings  # noqa: E402
from test_storefront import client  # noqa: E402


def _health_until_done(c, timeout_s: float = 60.0) -> list[str | None]:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = c.get("/health").json()
        assert body["status"] == "ok"
        seen.append(body["warm_up"])
        if body["warm_up"] != "running":
            break
        time.sleep(0.05)
    return seen


def test_health_reports_the_warm_up_until_it_is_done(web_shop, tmp_path):
    c = client(shop_settings(web_shop, tmp_path))
    try:
        seen = _health_until_done(c)
        assert seen[-1] == "done" and set(seen) <= {"running", "done"}
        # what it warmed is there: the explainer the home page's reasons need
        assert c.app.state.explainers._current is not None
    finally:
        c.__exit__(None, None, None)


def test_without_the_pages_there_is_no_warm_up(web_shop, tmp_path):
    c = client(replace(shop_settings(web_shop, tmp_path), storefront=False, console=False))
    try:
        assert c.get("/health").json()["warm_up"] is None
    finally:
        c.__exit__(None, None, None)
