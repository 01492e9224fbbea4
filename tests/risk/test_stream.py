"""The stream scorer flags an injected burst, repeats and impossible sequences, and not
a person's session."""

from __future__ import annotations

from shopformer.risk.stream import StreamEvent, StreamRiskConfig, StreamRiskScorer


def _person(scorer: StreamRiskScorer, user: str = "alice", t0: float = 1_000.0) -> list:
    """Views, a cart, a purchase, a few seconds apart: a person shopping."""
    out, t = [], t0
    for i, (typ, item) in enumerate([("view", "A"), ("view", "B"), ("view", "C"), ("add_to_cart", "B"),
                                     ("view", "D"), ("view", "B"), ("purchase", "B"), ("view", "E")]):
        t += 4.0 + 3 * (i % 3)
        out.append(scorer.score(StreamEvent(user, typ, t, item)))
    return out


def test_a_normal_session_is_not_flagged():
    scorer = StreamRiskScorer()
    scores = _person(scorer)
    assert not any(s.flagged for s in scores)
    assert max(s.score for s in scores) < 0.2 and all(not s.reasons for s in scores)  # threshold 0.5


def test_an_injected_burst_is_flagged_with_its_reasons():
    scorer = StreamRiskScorer()
    _person(scorer)
    t, last = 2_000.0, None
    for i in range(60):  # 60 views 0.2 s apart
        t += 0.2
        last = scorer.score(StreamEvent("bot", "view", t, f"I{i}"))
    assert last.flagged and last.score > 0.9
    rules = {r["rule"] for r in last.reasons}
    assert {"burst", "inhuman_speed"} <= rules
    assert not _person(scorer, "bob", 2_100.0)[-1].flagged  # another user at the same time is not


def test_repeats_and_purchases_never_viewed():
    scorer = StreamRiskScorer()
    _person(scorer)  # the shop logs views: the impossible-sequence rule is on
    s = None
    for i in range(6):  # purchases of items never viewed in the session, 20 s apart
        s = scorer.score(StreamEvent("carol", "purchase", 5_000.0 + 20 * i, f"X{i}", session_id="s1"))
    assert s.flagged and s.reasons[0]["rule"] == "impossible_sequence"
    for i in range(25):  # the same item carted 25 times, 2 s apart
        s = scorer.score(StreamEvent("dave", "add_to_cart", 9_000.0 + 2 * i, "Z"))
    assert s.flagged and s.reasons[0]["rule"] == "repeated_identical"


def test_order_lines_are_one_action_and_a_shop_without_views_never_trips_the_sequence_rule():
    scorer = StreamRiskScorer()
    s = None
    for k in range(5):  # five orders of 40 lines, an hour apart: lines of an order arrive together
        for i in range(40):
            s = scorer.score(StreamEvent("wholesaler", "purchase", 3_600.0 * k, f"P{i}", checkout_id=f"inv{k}"))
        assert not s.flagged, s.reasons
    assert not scorer.logs_views


def test_memory_is_bounded():
    scorer = StreamRiskScorer(StreamRiskConfig(max_users=50, idle_s=100.0))
    for u in range(500):
        scorer.score(StreamEvent(f"u{u}", "view", float(u), "A"))
    assert len(scorer.users) <= 51


def test_sessions_split_on_silence_and_keep_distinct_names():
    scorer = StreamRiskScorer(StreamRiskConfig(session_gap_s=1800.0, idle_s=3600.0))
    first = scorer.score(StreamEvent("erin", "view", 0.0, "A")).session
    assert scorer.score(StreamEvent("erin", "view", 60.0, "B")).session == first
    later = scorer.score(StreamEvent("erin", "view", 2_000.0, "C")).session  # 32 min of silence
    after_idle = scorer.score(StreamEvent("erin", "view", 90_000.0, "D")).session  # state forgotten meanwhile
    assert len({first, later, after_idle}) == 3
