"""Request-size limits: bodies refused with 413 from Content-Length before they are read,
or as soon as the bytes streamed pass the limit; batch writes with their own limit; and
the per-field limits (event context, product attributes) with 422."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import anyio
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from test_api import AUTH, KEY, event, make_client, shop, store_url  # noqa: E402, F401 - fixtures

from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402

SMALL = 64 << 10  # bytes: the body limit these tests serve with
BATCH = 1 << 20


@pytest.fixture
def client(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], search=False, max_body_bytes=SMALL, max_batch_body_bytes=BATCH) as c:
        yield c


def history(client, user: str) -> list[dict]:
    r = client.get(f"/v1/users/{user}")
    return r.json()["events"] if r.status_code == 200 else []


# -- a real server ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[int]:
    """uvicorn on a free loopback port (no model: the body is refused before any route
    work), with a 64 KiB body limit."""
    url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'store.db'}"
    EventStore(StoreConfig(url)).close()
    app = create_app(ServeSettings(store_url=url, api_key=KEY, search=False, sync_s=0, max_body_bytes=SMALL,
                                   max_batch_body_bytes=BATCH))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def _response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body[: _length(data)])


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _head(path: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {KEY}\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("path", ["/v1/recommendations/session", "/v1/events", "/v1/events:batch"])
def test_a_300_mb_content_length_is_refused_before_the_body_is_read(server, path):
    """The probe of issue 17: a 300 MB body to the (open) session endpoint. The answer
    comes with only the headers sent, so nothing waited for (or buffered) the body."""
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(_head(path, f"Content-Length: {300 << 20}\r\n") + b'{"item_ids": [')
        status, body = _response(sock)
    assert status == 413
    limit, setting = (BATCH, "SHOPFORMER_MAX_BATCH_BODY_BYTES") if path.endswith(":batch") else (
        SMALL, "SHOPFORMER_MAX_BODY_BYTES")
    assert body["detail"] == f"request body too large: this route accepts at most {limit:,} bytes ({setting})"


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    """No Content-Length: the bytes are counted as they arrive; the client, streaming
    64 MB, hears 413 long before it is done."""
    chunk = b"x" * (16 << 10)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(_head("/v1/recommendations/session", "Transfer-Encoding: chunked\r\n"))
        while sent < 64 << 20 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, body = _response(sock)
        # then the server hangs up instead of reading the rest of the body to keep the
        # connection (the client may still be sending: a reset is a hang-up too)
        sock.settimeout(5)
        try:
            rest = sock.recv(1)
        except ConnectionResetError:
            rest = b""
    assert status == 413 and "65,536" in body["detail"]
    assert sent < 16 << 20
    assert rest == b""


def test_the_limit_counts_what_the_app_reads_chunk_by_chunk(shop, store_url):  # noqa: F811
    """In process, ASGI: the app pulls at most limit / chunk + 1 chunks of an endless body."""
    app = create_app(ServeSettings(store_url=store_url, api_key=KEY, search=False, max_body_bytes=SMALL))
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 4096, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/recommendations/session", "raw_path": b"/v1/recommendations/session", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"), (b"host", b"x")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    anyio.run(app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert pulled <= SMALL // 4096 + 1
    assert b"65,536" in b"".join(m.get("body", b"") for m in sent[1:])


def test_a_percent_encoded_slash_in_an_id_is_addressable(server):
    """``a%2Fb`` (a literal percent) is fine: a client encodes the ``%``."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server}", headers={"X-API-Key": KEY}) as c:
        assert c.post("/v1/events", json=event("a%2Fb", "x")).status_code == 201
        r = c.get(f"/v1/users/{urllib.parse.quote('a%2Fb', safe='')}")
        assert r.status_code == 200 and r.json()["user_id"] == "a%2Fb"
        assert c.post("/v1/events", json=event("a/b", "x")).status_code == 422


# -- batch writes have their own limit ----------------------------------------------------
def test_batch_writes_have_their_own_body_limit(client):
    big = event("lim", "a", context={"pad": "p" * (SMALL + 10)})
    r = client.post("/v1/events", json=big, headers=AUTH)
    assert r.status_code == 413 and "at most 65,536 bytes" in r.json()["detail"]
    rows = [event("lim", "a", context={"pad": "p" * 500, "i": i}) for i in range(300)]  # ~170 KB
    r = client.post("/v1/events:batch", json=rows, headers=AUTH)
    assert r.status_code == 200 and r.json()["inserted"] == 300
    products = [{"item_id": f"p{i}", "title": "t" * 500} for i in range(300)]
    assert client.put("/v1/catalog/items", json=products, headers=AUTH).status_code == 200
    too_big = [event("lim2", "a", context={"pad": "p" * 5000, "i": i}) for i in range(300)]  # ~1.5 MB
    r = client.post("/v1/events:batch", json=too_big, headers=AUTH)
    assert r.status_code == 413 and "at most 1,048,576 bytes" in r.json()["detail"]
    assert history(client, "lim2") == []


# -- per-field limits -------------------------------------------------------------------
def test_event_context_is_limited_in_utf8_bytes(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], search=False) as c:  # the defaults: 16 KiB, 1 MiB
        ok = c.post("/v1/events", json=event("ctx", "a", context={"note": "n" * 15_000}), headers=AUTH)
        assert ok.status_code == 201
        # 9,000 characters but 27,000 bytes: the limit is in bytes
        r = c.post("/v1/events", json=event("ctx", "b", context={"note": "€" * 9_000}), headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "context"]
        assert "SHOPFORMER_MAX_CONTEXT_BYTES" in r.json()["detail"][0]["msg"]
        batch = [event("ctx2", "a"), event("ctx2", "b", context={"x": "y" * 20_000})]
        r = c.post("/v1/events:batch", json=batch, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 1, "context"]
        huge = c.post("/v1/events", json=event("ctx", "c", context={"x": "y" * (20 << 20)}), headers=AUTH)
        assert huge.status_code == 413  # the 20 MB context of the probe: refused as a body
        stored = c.get("/v1/users/ctx").json()["events"]
        assert [e["item_id"] for e in stored] == ["a"] and stored[0]["context"] == {"note": "n" * 15_000}
        assert c.get("/v1/users/ctx2").status_code == 404


def test_product_attributes_are_limited(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"], search=False, max_attributes_bytes=1000) as c:
        rows = [{"item_id": "ok", "attributes": {"a": "x" * 900}}, {"item_id": "big", "attributes": {"a": "x" * 1000}}]
        r = c.put("/v1/catalog/items", json=rows, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 1, "attributes"]
        assert "SHOPFORMER_MAX_ATTRIBUTES_BYTES" in r.json()["detail"][0]["msg"]
        assert c.get("/v1/items/ok").status_code == 404  # nothing written
        assert c.put("/v1/catalog/items", json=rows[:1], headers=AUTH).status_code == 200
