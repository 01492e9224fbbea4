"""The stream watch in the API: events posted by a bot (a burst of the same add to cart,
faster than a person clicks) are flagged with reasons, counted in /metrics and listed for
admins; a customer at a person's pace is not; the watch can be turned off."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.serve import ServeSettings, create_app  # noqa: E402

ADMIN = "adm1n"
T0 = datetime.now(timezone.utc) - timedelta(minutes=30)


def _client(tmp_path, **kw) -> TestClient:
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 's.db'}", search=False, sync_s=0, api_key=ADMIN,
                             storefront=False, console=False, impressions=None, **kw)
    return TestClient(create_app(settings), headers={"X-API-Key": ADMIN})


def _events(user: str, n: int, step_s: float, item: str | None = None) -> list[dict]:
    return [{"user_id": user, "type": "add_to_cart" if item else "view", "item_id": item or f"p{i}",
             "timestamp": (T0 + timedelta(seconds=i * step_s)).isoformat()} for i in range(n)]


def test_a_bot_is_flagged_and_a_person_is_not(tmp_path):
    with _client(tmp_path) as c:
        for e in _events("person", 12, 20.0):  # one product every 20 s
            assert c.post("/v1/events", json=e).status_code == 201
        bot = _events("bot", 40, 0.1, item="p1")  # 40 identical adds in 4 s
        assert c.post("/v1/events:batch", json=bot[:20]).json()["inserted"] == 20
        for e in bot[20:]:
            assert c.post("/v1/events", json=e).status_code == 201
        got = c.get("/v1/admin/risk/unusual", params={"limit": 1000})
        assert got.status_code == 200, got.text
        body = got.json()
        users = {f["user_id"] for f in body["flagged"]}
        assert users == {"bot"} and body["users_tracked"] == 2
        latest = body["flagged"][0]
        assert latest["at"].startswith((T0 + timedelta(seconds=3.9)).isoformat()[:19])  # newest first
        rules = {r["rule"] for r in latest["reasons"]}
        assert {"burst", "repeated_identical", "inhuman_speed"} <= rules
        assert latest["score"] >= body["threshold"]
        assert len(c.get("/v1/admin/risk/unusual", params={"limit": 3}).json()["flagged"]) == 3
        metrics = c.get("/metrics").text
        assert 'shopformer_unusual_events_total{rule="burst"}' in metrics
        # admins only
        assert c.get("/v1/admin/risk/unusual", headers={"X-API-Key": "wrong"}).status_code in (401, 403)
        assert c.get("/v1/admin/risk/unusual", params={"limit": 0}).status_code == 422


def test_the_watch_can_be_off(tmp_path):
    with _client(tmp_path, stream_watch=False) as c:
        for e in _events("bot", 40, 0.1, item="p1"):
            assert c.post("/v1/events", json=e).status_code == 201
        assert c.get("/v1/admin/risk/unusual").status_code == 404
        assert "shopformer_unusual_events_total" not in c.get("/metrics").text


def test_the_setting_from_the_environment():
    assert ServeSettings.from_env({}).stream_watch
    assert not ServeSettings.from_env({"SHOPFORMER_STREAM_WATCH": "0"}).stream_watch
    with pytest.raises(ValueError, match="SHOPFORMER_STREAM_WATCH"):
        ServeSettings.from_env({"SHOPFORMER_STREAM_WATCH": "sometimes"})
