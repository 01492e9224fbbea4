# ruff: noqa: F811 - pytest fixtures imported from test_api
"""Access control: scoped keys stored hashed, read keys for customers' data, per-key
rate limits (429 + Retry-After, in memory and shared through Redis), CORS, the audit log,
and the `shopformer keys` / `shopformer audit` commands."""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from shopformer.cli import app as cli  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402
from shopformer.store.access import AccessError, create_key, hash_key, key_id_of, revoke_key  # noqa: E402

from test_api import KEY, event, shop, store_url  # noqa: E402, F401 - fixtures

ADMIN = {"X-API-Key": KEY}  # SHOPFORMER_API_KEY holds every scope


def client(store_url, run=None, **kw) -> TestClient:
    kw = {"api_key": KEY, "sync_s": 0, **kw}
    return TestClient(create_app(ServeSettings(store_url=store_url, run=run, search=False, **kw)))


def make_key(c: TestClient, *scopes: str, rate: str | None = None) -> dict:
    r = c.post("/v1/admin/keys", json={"name": f"test {'+'.join(scopes)}", "scopes": list(scopes), "rate_limit": rate},
               headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()


def test_customer_data_needs_a_read_key_once_a_key_exists(shop, store_url):
    with client(store_url, shop["run1"]) as c:
        for path in ("/v1/users/u1", "/v1/users/u1/recommendations"):
            r = c.get(path)
            assert r.status_code == 401 and "'read' scope" in r.json()["detail"], path
            assert c.get(path, headers={"X-API-Key": "nope"}).status_code == 403
            assert c.get(path, headers=ADMIN).status_code == 200
        # what is not a customer's data stays open: similar items, item lookup, sessions
        assert c.get("/v1/items/a/similar").status_code == 200
        assert c.get("/v1/items/a").status_code == 200
        assert c.post("/v1/recommendations/session", json={"item_ids": ["a"]}).status_code == 200
        # personalized search is checked before the search service (off here: 503)
        assert c.get("/v1/search", params={"q": "cup", "user_id": "u1"}).status_code == 401
        assert c.get("/v1/search", params={"q": "cup"}).status_code == 503


def test_without_any_key_reads_are_open_and_writes_refused(shop, store_url):
    with client(store_url, shop["run1"], api_key=None) as c:
        assert c.get("/v1/users/u1").status_code == 200
        r = c.post("/v1/events", json=event("u1", "a"))
        assert r.status_code == 503 and "shopformer keys create" in r.json()["detail"]
        assert c.post("/v1/admin/keys", json={"name": "x", "scopes": ["read"]}).status_code == 503


def test_scopes(shop, store_url):
    with client(store_url, shop["run1"]) as c:
        read, write, admin = make_key(c, "read"), make_key(c, "write"), make_key(c, "admin")
        rk, wk, ak = ({"X-API-Key": k["key"]} for k in (read, write, admin))
        assert c.get("/v1/users/u1", headers=rk).status_code == 200
        r = c.post("/v1/events", json=event("u1", "b"), headers=rk)
        assert r.status_code == 403 and "lacks the 'write' scope" in r.json()["detail"] and read["key_id"] in r.json()["detail"]
        assert c.post("/v1/events", json=event("u1", "b"), headers=wk).status_code == 201
        assert c.get("/v1/users/u1", headers=wk).status_code == 403
        assert c.put("/v1/catalog/items", json=[{"item_id": "z", "title": "Zip"}], headers=wk).status_code == 200
        for h in (rk, wk):
            assert c.post("/v1/admin/reload", headers=h).status_code == 403
            assert c.get("/v1/users/u1/export", headers=h).status_code == 403
            assert c.get("/v1/admin/audit", headers=h).status_code == 403
        # admin holds read and write too
        assert c.get("/v1/users/u1", headers=ak).status_code == 200
        assert c.post("/v1/events", json=event("u2", "c"), headers=ak).status_code == 201
        assert c.post("/v1/admin/reload", headers=ak).status_code == 200
        # bad requests name the field
        r = c.post("/v1/admin/keys", json={"name": "x", "scopes": ["read"], "rate_limit": "lots"}, headers=ak)
        assert r.status_code == 422 and "rate_limit" in r.text
        assert c.post("/v1/admin/keys", json={"name": "x", "scopes": ["owner"]}, headers=ak).status_code == 422


def test_keys_are_stored_hashed_and_listed_without_secrets(shop, store_url, tmp_path):
    with client(store_url, shop["run1"]) as c:
        made = make_key(c, "read", "write")
        assert made["key"].startswith("sfk_") and key_id_of(made["key"]) == made["key_id"]
        listed = c.get("/v1/admin/keys", headers=ADMIN).json()
        assert [k["key_id"] for k in listed] == [made["key_id"]] and "key" not in listed[0]
        assert listed[0]["scopes"] == ["read", "write"]
    db = store_url.removeprefix("sqlite:///")
    raw = b"".join(open(p, "rb").read() for p in (db, db + "-wal") if __import__("os").path.exists(p))
    assert made["key"].encode() not in raw  # the secret is nowhere in the database files
    assert hash_key(made["key"]).encode() in raw  # its hash is what is kept


def test_revocation_and_keys_made_by_another_process(shop, store_url):
    with client(store_url, shop["run1"]) as a, client(store_url, shop["run1"], sync_s=0.05) as b:
        made = make_key(a, "read")
        h = {"X-API-Key": made["key"]}
        assert b.get("/v1/users/u1", headers=h).status_code == 200  # found on first use by b
        assert a.delete(f"/v1/admin/keys/{made['key_id']}", headers=ADMIN).status_code == 200
        assert a.get("/v1/users/u1", headers=h).status_code == 403  # at once where it was revoked
        deadline = time.monotonic() + 5
        while b.get("/v1/users/u1", headers=h).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.get("/v1/users/u1", headers=h).status_code == 403  # within b's sync tick
        listed = a.get("/v1/admin/keys", params={"include_revoked": True}, headers=ADMIN).json()
        assert listed[0]["revoked_at"] is not None
        assert a.delete("/v1/admin/keys/nosuchkey", headers=ADMIN).status_code == 404


def test_rate_limit_per_key_with_retry_after(shop, store_url):
    with client(store_url, shop["run1"], rate_limit="100/minute") as c:
        tight = {"X-API-Key": make_key(c, "read", rate="3/minute")["key"]}
        other = {"X-API-Key": make_key(c, "read")["key"]}  # the server default, 100/minute
        codes = [c.get("/v1/users/u1", headers=tight).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/v1/users/u1", headers=tight)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        assert "3 per 1 minute" in r.json()["detail"]
        assert c.get("/v1/users/u1", headers=other).status_code == 200  # its own budget
        assert c.get("/health").status_code == 200  # never limited
        metrics = c.get("/metrics").text
        assert 'status="429"' in metrics


def test_anonymous_rate_limit_per_address(shop, store_url):
    with client(store_url, shop["run1"], anon_rate_limit="2/minute") as c:
        codes = [c.get("/v1/items/a").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert c.get("/v1/items/a", headers=ADMIN).status_code == 200  # a key has its own (no) limit


def test_rate_limit_shared_through_redis(shop, store_url):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379", socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc})")
    kw = dict(rate_limit_storage="redis://127.0.0.1:6379")
    with client(store_url, shop["run1"], **kw) as a, client(store_url, shop["run1"], **kw) as b:
        h = {"X-API-Key": make_key(a, "read", rate="3/minute")["key"]}  # a new key id: counts start at 0
        codes = [x.get("/v1/users/u1", headers=h).status_code for x in (a, b, a, b)]
        assert codes == [200, 200, 200, 429]  # one budget across both processes


def test_cors(shop, store_url):
    origin = "https://shop.example"
    with client(store_url, shop["run1"], cors_origins=(origin,), anon_rate_limit="1/minute") as c:
        pre = c.options("/v1/users/u1", headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                                 "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
        assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        bad = c.options("/v1/users/u1", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in bad.headers
        # the limiter's sliding-window counter weighs the previous minute's hits down as the
        # new minute goes on, so two hits straddling a minute boundary are allowed: start
        # this pair well inside a minute
        if time.time() % 60 > 50:
            time.sleep(60.5 - time.time() % 60)
        assert c.get("/v1/items/a", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin
        limited = c.get("/v1/items/a", headers={"Origin": origin})  # over the limit: the browser can read the 429
        assert limited.status_code == 429 and limited.headers["access-control-allow-origin"] == origin
        assert "retry-after" in limited.headers["access-control-expose-headers"].lower()
    with client(store_url, shop["run1"]) as c:  # no origins configured: no CORS headers
        assert "access-control-allow-origin" not in c.get("/v1/items/a", headers={"Origin": origin}).headers


def test_audit_log_of_admin_actions(shop, store_url):
    with client(store_url, shop["run1"]) as c:
        made = make_key(c, "admin")
        ak = {"X-API-Key": made["key"]}
        assert c.post("/v1/admin/reload", json={"run": str(shop["run2"])}, headers=ak).status_code == 200
        assert c.post("/v1/admin/reload", json={"run": str(shop["data"])}, headers=ak).status_code == 400
        assert c.get("/v1/users/u3/export", headers=ak).status_code == 200
        assert c.delete("/v1/users/u3", headers=ak).status_code == 200
        assert c.delete(f"/v1/admin/keys/{made['key_id']}", headers=ADMIN).status_code == 200
        log = c.get("/v1/admin/audit", headers=ADMIN).json()
        got = [(e["action"], e["outcome"], e["actor"].split(" ")[0]) for e in log["entries"]]
        actor = f"key:{made['key_id']}"
        assert got == [("create_key", "ok", "env-key"), ("reload", "ok", actor), ("reload", "failed", actor),
                       ("export_user", "ok", actor), ("erase_user", "ok", actor), ("revoke_key", "ok", "env-key")]
        erase = log["entries"][4]
        assert erase["target"].startswith("user_sha256:") and "u3" not in json.dumps(erase)
        assert erase["detail"]["removed"]["events"] == 3
        page = c.get("/v1/admin/audit", params={"after": log["entries"][1]["entry_id"], "limit": 2}, headers=ADMIN).json()
        assert [e["action"] for e in page["entries"]] == ["reload", "export_user"]
        assert page["next_after"] == log["entries"][3]["entry_id"]
        only = c.get("/v1/admin/audit", params={"action": "reload"}, headers=ADMIN).json()["entries"]
        assert [e["outcome"] for e in only] == ["ok", "failed"]


def test_store_key_functions(tmp_path):
    with EventStore(StoreConfig(f"sqlite:///{tmp_path / 's.db'}")) as s:
        with pytest.raises(AccessError, match="scopes"):
            create_key(s, "x", ["root"])
        with pytest.raises(AccessError, match="scopes"):
            create_key(s, "x", [])
        with pytest.raises(AccessError, match="rate_limit"):
            create_key(s, "x", ["read"], "fast")
        with pytest.raises(AccessError, match="name"):
            create_key(s, "  ", ["read"])
        with pytest.raises(AccessError, match="key_id"):
            revoke_key(s, "missing")
        k, secret = create_key(s, "x", ["write", "read", "read"], " 5/second ")
        assert k.scopes == ("read", "write") and k.rate_limit == "5/second" and not k.allows("admin")
        assert secret != create_key(s, "x", ["read"])[1]  # random


def test_settings_validate_limits_and_origins():
    with pytest.raises(ValueError, match="rate_limit"):
        ServeSettings(rate_limit="many")
    with pytest.raises(ValueError, match="SHOPFORMER_CORS_ORIGINS"):
        ServeSettings.from_env({"SHOPFORMER_CORS_ORIGINS": "shop.example"})
    with pytest.raises(ValueError, match="rate_limit_storage"):
        ServeSettings(rate_limit_storage="memcached://x")
    s = ServeSettings.from_env({"SHOPFORMER_CORS_ORIGINS": "https://a.example/, http://localhost:3000",
                                "SHOPFORMER_RATE_LIMIT": "10/second", "SHOPFORMER_ANON_RATE_LIMIT": "1/second"})
    assert s.cors_origins == ("https://a.example", "http://localhost:3000") and s.rate_limit == "10/second"


def test_cli_keys_and_audit(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "backend", "--store", url, "--scope", "read", "--scope", "write",
                               "--rate", "50/second", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert key["scopes"] == ["read", "write"] and key["key"].startswith("sfk_")
    listed = runner.invoke(cli, ["keys", "list", "--store", url, "--json"])
    assert [k["key_id"] for k in json.loads(listed.output)] == [key["key_id"]] and key["key"] not in listed.output
    bad = runner.invoke(cli, ["keys", "create", "x", "--store", url, "--scope", "god"])
    assert bad.exit_code == 1 and "unknown 'god'" in bad.output
    assert runner.invoke(cli, ["keys", "revoke", key["key_id"], "--store", url]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["keys", "list", "--store", url, "--json"]).output) == []
    forget = runner.invoke(cli, ["forget", "ann-" + uuid.uuid4().hex[:6], "--store", url, "--json"])
    assert forget.exit_code == 0, forget.output
    log = [json.loads(line) for line in runner.invoke(cli, ["audit", "--store", url, "--json"]).output.splitlines()]
    assert [e["action"] for e in log] == ["create_key", "revoke_key", "erase_user"]
    assert all(e["actor"].startswith("cli") for e in log)
    # a key made on the command line works on a server over the same store
    with EventStore(StoreConfig(url)) as s:
        _, secret = create_key(s, "reader", ["read"])
    with client(url, None) as c:
        assert c.get("/v1/users/nobody", headers={"X-API-Key": secret}).status_code == 404
        assert c.get("/v1/users/nobody").status_code == 401
