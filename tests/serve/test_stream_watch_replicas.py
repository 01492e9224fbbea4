"""Two API replicas (two apps in this process, each with its own lifespan, Redis
subscriber and stream watch) on one PostgreSQL store with the Redis channel: a bot whose
events a load balancer alternates between A and B is flagged, although the half each
replica stores stays under every limit of the scorer; each flagged event is counted once,
by the replica that stored it; only pseudonyms travel on the channel.

Needs SHOPFORMER_TEST_POSTGRES_URL (a database of its own is made) and Redis at
redis://127.0.0.1:6379/0; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("httpx")
redis = pytest.importorskip("redis")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.privacy.pseudonym import PseudonymConfig, Pseudonymizer  # noqa: E402
from shopformer.risk.stream import StreamEvent, StreamRiskScorer  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402

from test_durability import PG_URL, postgres_database  # noqa: E402
from test_replicas import REDIS_URL, redis_channel  # noqa: E402,F401 - the fixture: Redis reachable, a fresh channel

ADMIN = "replica-watch-key"
KEY = PseudonymConfig(key=b"stream-watch-test-key-0123456789")
BOT = "bot-customer-17"  # a raw customer id: must never be on the channel
N, STEP_S = 30, 0.3  # 30 views 0.3 s apart: over the limits; every other one (0.6 s apart, 15) is not

pytestmark = pytest.mark.skipif(not PG_URL, reason="set SHOPFORMER_TEST_POSTGRES_URL to run two replicas on PostgreSQL")


def bot_events() -> list[dict]:
    t0 = datetime.now(timezone.utc) - timedelta(minutes=10)
    return [{"user_id": BOT, "type": "view", "item_id": f"p{i}", "session_id": "visit-1", "event_id": f"bot-{i}",
             "timestamp": (t0 + timedelta(seconds=i * STEP_S)).isoformat()} for i in range(N)]


def flagged_by(events: list[dict]) -> list[int]:
    """The positions of ``events`` one scorer flags when it sees just these."""
    scorer = StreamRiskScorer()
    return [int(e["item_id"][1:]) for e in events
            if scorer.score(StreamEvent(e["user_id"], e["type"], datetime.fromisoformat(e["timestamp"]).timestamp(),
                                        e["item_id"], e["session_id"])).flagged]


def metric(client: TestClient, name: str, label: str) -> float:
    found = re.search(rf'^{name}\{{\w+="{label}"\}} (\S+)$', client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_bot_alternated_over_two_replicas_is_flagged(redis_channel, tmp_path):  # noqa: F811 - the imported fixture
    channel = redis_channel
    events = bot_events()
    # the scorer on what one replica stores misses the bot; on the whole stream it flags it
    assert flagged_by(events[0::2]) == [] and flagged_by(events[1::2]) == []
    whole = flagged_by(events)
    assert len(whole) >= 20
    spy = redis.Redis.from_url(REDIS_URL).pubsub()
    spy.subscribe(channel)
    with postgres_database() as url:
        settings = ServeSettings(store_url=url, search=False, sync_s=0, api_key=ADMIN, storefront=False,
                                 console=False, impressions=None, redis_url=REDIS_URL, redis_channel=channel,
                                 pseudonyms=KEY)
        with TestClient(create_app(settings), headers={"X-API-Key": ADMIN}) as a, \
                TestClient(create_app(settings), headers={"X-API-Key": ADMIN}) as b:
            probe = redis.Redis.from_url(REDIS_URL)
            deadline = time.monotonic() + 10
            while dict(probe.pubsub_numsub(channel)).get(channel.encode(), 0) < 3:  # A, B and the spy
                assert time.monotonic() < deadline, "the replicas never subscribed"
                time.sleep(0.02)
            probe.close()
            for i, event in enumerate(events):  # the load balancer: even to A, odd to B
                here, there = (a, b) if i % 2 == 0 else (b, a)
                seen = metric(there, "shopformer_stream_watch_peer_events_total", "scored")
                r = here.post("/v1/events", json=event)
                assert r.status_code == 201, r.text
                # wait for the other replica to score it, so both see the stream in order
                deadline = time.monotonic() + 5
                while metric(there, "shopformer_stream_watch_peer_events_total", "scored") < seen + 1:
                    assert time.monotonic() < deadline, f"event {i} never reached the other replica"
                    time.sleep(0.002)
            lists = {name: c.get("/v1/admin/risk/unusual", params={"limit": 1000}).json()
                     for name, c in (("a", a), ("b", b))}
            burst = {name: metric(c, "shopformer_unusual_events_total", "burst") for name, c in (("a", a), ("b", b))}
    alias = Pseudonymizer(KEY).user(BOT)
    got = {name: sorted(int(f["item_id"][1:]) for f in body["flagged"]) for name, body in lists.items()}
    # each replica counts the flags of the events it stored, and together they are the whole stream's
    assert got["a"] == [i for i in whole if i % 2 == 0] and got["b"] == [i for i in whole if i % 2 == 1]
    assert got["a"] and got["b"]
    assert {f["user_id"] for body in lists.values() for f in body["flagged"]} == {alias}
    assert lists["a"]["users_tracked"] == 1 == lists["b"]["users_tracked"]
    reasons = {r["rule"] for f in lists["b"]["flagged"] for r in f["reasons"]}
    assert {"burst", "inhuman_speed"} <= reasons
    assert burst["a"] + burst["b"] >= 1
    # the channel carried one events notice per stored event, with pseudonyms only
    messages, deadline = [], time.monotonic() + 10
    while (m := spy.get_message(timeout=0.2)) is not None and time.monotonic() < deadline:
        if m["type"] == "message":
            messages.append(m["data"].decode())
    spy.close()
    assert all(BOT not in m and "visit-1" not in m for m in messages)
    notices = [json.loads(m) for m in messages if json.loads(m)["kind"] == "events"]
    assert len(notices) == N and {n["events"][0][0] for n in notices} == {alias}
