"""The stream watch across replicas without servers (serve/stream_watch.py): the wire form
of an event and its checks, two watches joined by an in-process channel flagging a bot
that each alone misses (counted once, by the replica that stored the event), pseudonyms
on the wire, malformed notices dropped, and late events scored by their timestamp."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry

from shopformer.privacy.pseudonym import PseudonymConfig, Pseudonymizer
from shopformer.risk.stream import StreamEvent, StreamRiskConfig, StreamRiskScorer
from shopformer.serve.schemas import EventIn
from shopformer.serve.shared_state import Listeners, RedisSharedState, SharedState, SharedStateConfig
from shopformer.serve.stream_watch import StreamWatch, decode_events, encode_events

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def bot(n: int = 30, step_s: float = 0.3, user: str = "bot-7") -> list[EventIn]:
    """``n`` views of distinct products ``step_s`` apart: 30 at 0.3 s trip burst and speed."""
    return [EventIn(user_id=user, type="view", item_id=f"p{i}", session_id="s-1",
                    timestamp=T0 + timedelta(seconds=i * step_s)) for i in range(n)]


class Wire(SharedState):
    """An in-process channel: what one watch publishes goes (as JSON) to the others' ``peer``."""

    enabled = True

    def __init__(self) -> None:
        self.watches: list[StreamWatch] = []
        self.sent: list[str] = []

    def publish_events(self, events: list[list]) -> None:
        message = json.dumps({"kind": "events", "events": events})
        self.sent.append(message)
        for watch in self.watches:
            if watch.shared is not self:  # a replica skips its own notices
                watch.peer(json.loads(message)["events"])


def joined(n: int = 2, **kw) -> tuple[list[StreamWatch], list[Wire]]:
    watches = [StreamWatch(StreamRiskConfig(), CollectorRegistry(), **kw) for _ in range(n)]
    wires = [Wire() for _ in watches]
    for watch, wire in zip(watches, wires):
        watch.shared = wire
        wire.watches = watches
    return watches, wires


def counted(watch: StreamWatch) -> int:
    return len(watch.flagged)


def test_the_wire_form_round_trips_and_names_what_is_wrong():
    events = [StreamEvent("u1", "view", 1_700_000_000.25, "p1", "s1", None),
              StreamEvent("u2", "purchase", 1_700_000_001.0, "p2", None, "order-9")]
    wire = encode_events(events)
    assert wire == [["u1", "view", 1_700_000_000.25, "p1", "s1", None],
                    ["u2", "purchase", 1_700_000_001.0, "p2", None, "order-9"]]
    assert decode_events(json.loads(json.dumps(wire))) == events
    # a newer replica's extra field is ignored; an integer timestamp is seconds too
    assert decode_events([["u1", "view", 5, None, None, None, "extra"]]) == [StreamEvent("u1", "view", 5.0)]
    bad = {
        "events must be a list": {"u": 1},
        r"events\[1\] must be a list of 6 fields": [wire[0], ["u1", "view", 1.0]],
        r"events\[0\]\.user_id must be a non-empty string": [["", "view", 1.0, None, None, None]],
        r"events\[0\]\.type must be a non-empty string, got int": [["u1", 3, 1.0, None, None, None]],
        r"events\[0\]\.timestamp must be a finite number": [["u1", "view", "noon", None, None, None]],
        r"events\[0\]\.timestamp must be a finite": [["u1", "view", float("inf"), None, None, None]],
        r"events\[0\]\.timestamp": [["u1", "view", True, None, None, None]],
        r"events\[0\]\.session_id must be a string or null": [["u1", "view", 1.0, "p", 7, None]],
    }
    for message, payload in bad.items():
        with pytest.raises(ValueError, match=message):
            decode_events(payload)


def test_a_bot_alternated_over_two_replicas_is_flagged_and_counted_once():
    events = bot()
    # each replica alone (no channel) misses it: half the events, 0.6 s apart, 15 a minute
    for half in (events[0::2], events[1::2]):
        alone = StreamWatch(StreamRiskConfig(), CollectorRegistry())
        alone.observe(half)
        assert counted(alone) == 0 and alone.scorer.users["bot-7"]
    # one scorer over the whole stream: the reference the joined replicas must match
    whole = StreamRiskScorer()
    flagged = [i for i, e in enumerate(events)
               if whole.score(StreamEvent(e.user_id, "view", e.timestamp.timestamp(), e.item_id, "s-1")).flagged]
    assert len(flagged) >= 20
    (a, b), (wire_a, wire_b) = joined()
    for i, e in enumerate(events):  # a load balancer alternating: even to A, odd to B
        (a if i % 2 == 0 else b).observe([e])
    got_a = [int(f["item_id"][1:]) for f in a.flagged]
    got_b = [int(f["item_id"][1:]) for f in b.flagged]
    assert got_a == [i for i in flagged if i % 2 == 0] and got_b == [i for i in flagged if i % 2 == 1]
    assert counted(a) + counted(b) == len(flagged)  # each flagged event once, by the replica that stored it
    assert a.peers.labels("scored")._value.get() == 15 == b.peers.labels("scored")._value.get()
    assert len(wire_a.sent) == 15 and len(wire_b.sent) == 15
    burst = a.counter.labels("burst")._value.get() + b.counter.labels("burst")._value.get()
    assert burst >= 1


def test_pseudonymous_servers_score_and_send_pseudonyms_only():
    pseudonyms = Pseudonymizer(PseudonymConfig(key=b"k" * 32))
    (a, b), (wire_a, _) = joined(pseudonyms=pseudonyms)
    events = bot(user="alice@example.com")
    for i, e in enumerate(events):
        (a if i % 2 == 0 else b).observe([e])
    alias = pseudonyms.user("alice@example.com")
    assert alias != "alice@example.com"
    assert all("alice" not in m and '"s-1"' not in m for m in wire_a.sent)
    assert json.loads(wire_a.sent[0])["events"][0][:2] == [alias, "view"]
    assert {f["user_id"] for f in (*a.flagged, *b.flagged)} == {alias} and counted(a) > 0 and counted(b) > 0
    assert set(a.scorer.users) == {alias} == set(b.scorer.users)  # one user, whichever replica stored


def test_without_a_channel_nothing_is_sent_and_malformed_notices_are_dropped(caplog):
    watch = StreamWatch(StreamRiskConfig(), CollectorRegistry())
    assert not watch.shared.enabled
    watch.observe(bot(3))  # the no-op channel: publish_events does nothing
    for payload in (None, "junk", [["u", "view"]], [[None, "view", 1.0, None, None, None]]):
        watch.peer(payload)
    assert watch.peers.labels("dropped")._value.get() == 4 and watch.peers.labels("scored")._value.get() == 0
    assert "dropped a malformed events notice" in caplog.text and "events[0].user_id" in caplog.text
    # through the Redis listener's delivery (no Redis needed): junk never reaches the scorer, nor raises
    state = RedisSharedState(SharedStateConfig(url="redis://127.0.0.1:1/0"))
    noop = lambda *a: None  # noqa: E731
    listeners = Listeners(users=noop, reload=noop, catalog=noop, rules=noop, reset=noop, events=watch.peer)
    for data in (b"{not json", json.dumps({"origin": "x", "kind": "events"}),
                 json.dumps({"origin": "x", "kind": "events", "events": [[1, 2, 3, 4, 5, 6]]})):
        state._deliver(data, listeners)
    good = json.dumps({"origin": "x", "kind": "events", "events": encode_events([StreamEvent("u9", "view", 1.0, "p")])})
    state._deliver(good, listeners)
    state._deliver(good.replace('"x"', json.dumps(state.origin)), listeners)  # its own: skipped
    assert watch.peers.labels("dropped")._value.get() == 6 and watch.peers.labels("scored")._value.get() == 1
    assert "u9" in watch.scorer.users
    state.close()


def test_late_events_are_scored_by_their_timestamp():
    """Another replica's events arrive up to a few places late: the burst, speed and
    repeat measures end where the in-order stream's do."""
    rng = random.Random(3)
    stream = [StreamEvent("bot", "add_to_cart" if i % 3 else "view", 100.0 + 0.3 * i, f"p{i % 4}") for i in range(40)]
    late = list(stream)
    for i in range(0, len(late) - 2, 3):  # each third event arrives after the next one or two
        j = i + rng.choice((1, 2))
        late[i], late[j] = late[j], late[i]
    assert late != stream
    in_order, shuffled = StreamRiskScorer(), StreamRiskScorer()
    for e in stream:
        expected = in_order.score(e)
    for e in late:
        got = shuffled.score(e)
    assert got.reasons == expected.reasons and got.score == pytest.approx(expected.score)
    assert {r["rule"] for r in got.reasons} >= {"burst", "inhuman_speed"}
    a, b = in_order.users["bot"], shuffled.users["bot"]
    assert list(a.times) == list(b.times) and list(a.recent) == list(b.recent) and a.identical == b.identical
    # without placing by time, a late event would read as a negative gap and hide the speed
    gaps = [y - x for x, y in zip(b.times, list(b.times)[1:])]
    assert all(g == pytest.approx(0.3) for g in gaps)
