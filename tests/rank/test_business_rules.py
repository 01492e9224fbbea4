"""The business-rule step on hand-made candidates: each kind moves items as the module
documents, windows, audiences, the conflict order, and the provenance it reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shopformer.rank.rules import Audience, ItemFacts, Move, RulesConfig, RuleSet
from shopformer.store.rules import RuleError, check_rule

NOW = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)
IDS = ["a", "b", "c", "d", "e", "f"]
SCORES = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0]  # normalized: 1, .8, .6, .4, .2, 0
FACTS = {
    "a": ItemFacts(("kitchen",), "acme", ("sale",), True),
    "b": ItemFacts(("kitchen", "cups"), "zeta", (), True),
    "c": ItemFacts(("garden",), "acme", ("age-restricted",), False),
    "d": ItemFacts(("garden",), "zeta", (), True),
    "e": ItemFacts(("garden",), "Acme", (), True),
    "f": ItemFacts(("kitchen",), "zeta", (), True),
}


def rule(rule_id: int, kind: str, match: dict, **kw):
    from dataclasses import replace

    return replace(check_rule(kind, match, **kw), rule_id=rule_id)


def apply(rules, k=4, insertable=None, ids=IDS, scores=SCORES):
    return RuleSet.apply(rules, ids, scores, k, FACTS, insertable)


def test_no_rules_is_the_model_order_cut_to_k():
    out = apply([])
    assert out.item_ids == ["a", "b", "c", "d"] and out.scores == [10.0, 9.0, 8.0, 7.0] and out.moves == []


def test_boost_adds_its_weight_to_the_normalized_score():
    # e: 0.2 + 0.5 = 0.7 passes c (0.6) but not b (0.8)
    out = apply([rule(1, "boost", {"items": ["e"]}, weight=0.5)])
    assert out.item_ids == ["a", "b", "e", "c"]
    assert out.scores == [10.0, 9.0, 6.0, 8.0]  # the model's scores stay
    assert out.moves == [Move(1, "e", "boosted", 5, 3)]


def test_boost_by_brand_is_case_insensitive_and_weight_one_beats_everything():
    out = apply([rule(1, "boost", {"brand": "ACME"}, weight=1.0)], k=6)
    assert out.item_ids == ["a", "c", "e", "b", "d", "f"]  # 2, 1.6, 1.2 then the rest


def test_bury_pushes_out_of_k_and_still_fills_k():
    out = apply([rule(1, "bury", {"category": "kitchen"}, weight=1.0)])
    assert out.item_ids == ["c", "d", "e", "a"]  # a (1 - 1 = 0) ties f's 0 -> model order; b: -0.2
    assert len(out.item_ids) == 4
    assert Move(1, "b", "buried", 2, None) in out.moves and Move(1, "a", "buried", 1, 4) in out.moves
    assert all(m.item_id != "f" for m in out.moves)  # f: not shown, not in the model's top 4


def test_exclude_by_attribute_list_and_unavailable():
    out = apply([rule(1, "exclude", {"tag": "sale"}), rule(2, "exclude", {"unavailable": True})])
    assert out.item_ids == ["b", "d", "e", "f"]
    assert out.moves == [Move(1, "a", "excluded", 1, None), Move(2, "c", "excluded", 3, None)]


def test_pin_moves_a_candidate_and_inserts_only_where_allowed():
    out = apply([rule(1, "pin", {"items": ["d"]}, position=1)])
    assert out.item_ids == ["d", "a", "b", "c"] and out.moves == [Move(1, "d", "pinned", 4, 1)]
    pin_new = [rule(2, "pin", {"items": ["zz"]}, position=2)]
    assert apply(pin_new).item_ids == ["a", "b", "c", "d"]  # not insertable: nothing happens
    out = apply(pin_new, insertable=lambda i: i == "zz")
    assert out.item_ids == ["a", "zz", "b", "c"] and out.inserted == {"zz"}
    assert out.moves == [Move(2, "zz", "pinned", None, 2)]
    assert out.scores[1] == 9.0  # an inserted item takes the score of the item it displaced


def test_pins_by_priority_then_creation_and_past_k_does_nothing():
    rules = [rule(1, "pin", {"items": ["e"]}, position=1), rule(2, "pin", {"items": ["f"]}, position=1, priority=5),
             rule(3, "pin", {"items": ["d"]}, position=1), rule(4, "pin", {"items": ["c"]}, position=9)]
    out = apply(rules)
    # f (priority 5) wins slot 1, e (older) slot 2, d slot 3; c's position 9 > k
    assert out.item_ids == ["f", "e", "d", "a"]
    assert Move(4, "c", "pinned", 3, None) not in out.moves and all(m.rule_id != 4 for m in out.moves)


def test_conflict_order_exclude_beats_pin_and_boost():
    rules = [rule(1, "pin", {"items": ["c"]}, position=1), rule(2, "boost", {"items": ["c"]}, weight=5),
             rule(3, "exclude", {"tag": "age-restricted"})]
    out = apply(rules, insertable=lambda i: True)
    assert "c" not in out.item_ids and out.item_ids == ["a", "b", "d", "e"]
    assert out.moves == [Move(3, "c", "excluded", 3, None)]
    # an excluded item that only a pin would bring in is reported too, never shown
    out = apply([rule(1, "pin", {"items": ["c"]}, position=1), rule(3, "exclude", {"unavailable": True})],
                ids=["a", "b"], scores=[2.0, 1.0], insertable=lambda i: True)
    assert out.item_ids == ["a", "b"] and out.moves == [Move(3, "c", "excluded", None, None)]


def test_pin_is_applied_over_the_boosted_order():
    out = apply([rule(1, "boost", {"items": ["f"]}, weight=2), rule(2, "pin", {"items": ["a"]}, position=2)])
    assert out.item_ids == ["f", "a", "b", "c"]
    assert out.moves == [Move(1, "f", "boosted", 6, 1), Move(2, "a", "pinned", 1, 2)]


def test_short_answer_closes_up_behind_a_pin():
    out = apply([rule(1, "pin", {"items": ["b"]}, position=3)], ids=["a", "b"], scores=[2.0, 1.0])
    assert out.item_ids == ["a", "b"]


def test_time_window_and_audience_select_the_active_rules():
    day = timedelta(days=1)
    rules = [rule(1, "exclude", {"items": ["a"]}, starts_at=NOW + day),  # not yet
             rule(2, "exclude", {"items": ["b"]}, starts_at=NOW - day, ends_at=NOW),  # over (end exclusive)
             rule(3, "exclude", {"items": ["c"]}, starts_at=NOW - day, ends_at=NOW + day),
             rule(4, "exclude", {"items": ["d"]}, audience="known"),
             rule(5, "exclude", {"items": ["e"]}, audience="new"),
             rule(6, "exclude", {"items": ["f"]}, audience=["u1"])]
    rs = RuleSet(RulesConfig(), rules)
    asked = []

    def history() -> bool:
        asked.append(1)
        return True

    assert [r.rule_id for r in rs.active(NOW, Audience("u1", history))] == [3, 4, 6]
    assert [r.rule_id for r in rs.active(NOW, Audience("u2", False))] == [3, 5]
    assert [r.rule_id for r in rs.active(NOW, Audience(None, False))] == [3, 5]
    assert asked  # asked lazily, only because a rule's audience needs it
    only_all = RuleSet(RulesConfig(), [rule(1, "boost", {"brand": "x"}, weight=1)])
    asked.clear()
    only_all.active(NOW, Audience("u1", history))
    assert not asked
    out = RuleSet.apply(rs.active(NOW, Audience("u2", False)), IDS, SCORES, 4, FACTS)
    assert out.item_ids == ["a", "b", "d", "f"]  # c (window) and e (new) excluded


def test_fetch_is_more_than_k_within_the_catalog():
    rs = RuleSet(RulesConfig(factor=3, extra=20), [])
    assert rs.fetch(10) == 50 and rs.fetch(10, 30) == 30 and rs.fetch(10, 5) == 10


@pytest.mark.parametrize("kind,match,kw,needle", [
    ("boost", {"brand": "x"}, {}, "weight"),
    ("raise", {"brand": "x"}, {}, "kind"),
    ("exclude", {"brand": "x", "tag": "y"}, {}, "exactly one"),
    ("exclude", {"colour": "red"}, {}, "exactly one"),
    ("pin", {"brand": "x"}, {"position": 1}, "one item"),
    ("pin", {"items": ["a"]}, {}, "position"),
    ("exclude", {"unavailable": False}, {}, "only true"),
    ("exclude", {"items": []}, {}, "item ids"),
    ("exclude", {"tag": "x"}, {"audience": "vip"}, "audience"),
    ("exclude", {"tag": "x"}, {"starts_at": datetime(2026, 1, 1)}, "UTC"),
    ("exclude", {"tag": "x"}, {"starts_at": NOW, "ends_at": NOW}, "after"),
])
def test_bad_rules_are_refused_naming_the_problem(kind, match, kw, needle):
    with pytest.raises(RuleError, match=needle):
        check_rule(kind, match, **kw)


def _matches_by_scan(r, item_id: str) -> bool:
    """The documented matching, one rule at a time (the reference the index must equal)."""
    key, value = next(iter(r.match.items()))
    f = FACTS.get(item_id)
    if key == "items":
        return item_id in value
    if f is None:
        return False
    if key == "unavailable":
        return f.available is False
    found = {"category": f.categories, "tag": f.tags, "brand": (f.brand,) if f.brand else ()}[key]
    return value.casefold() in {x.casefold() for x in found}


@pytest.mark.parametrize("seed", range(30))
def test_indexed_matching_equals_scanning_every_rule(seed):
    import random

    rng = random.Random(seed)
    matches = [{"items": rng.sample(IDS, rng.randint(1, 3))}, {"category": "garden"}, {"category": "KITCHEN"},
               {"brand": "acme"}, {"tag": "sale"}, {"unavailable": True}]
    active = [rule(n + 1, rng.choice(["boost", "bury", "exclude"]), rng.choice(matches), weight=rng.choice([0.1, 0.5, 1.0]))
              for n in range(rng.randint(1, 12))]
    out = apply(active, k=len(IDS))
    excluded = {i for i in IDS if any(r.kind == "exclude" and _matches_by_scan(r, i) for r in active)}
    kept = [i for i in IDS if i not in excluded]
    score = dict(zip(IDS, SCORES))
    lo, hi = min((score[i] for i in kept), default=0.0), max((score[i] for i in kept), default=0.0)
    norm = {i: (score[i] - lo) / (hi - lo) if hi > lo else 0.0 for i in kept}  # min-max over what is kept
    adjusted = {i: norm[i] + sum(r.weight if r.kind == "boost" else -r.weight
                                 for r in active if r.kind in ("boost", "bury") and _matches_by_scan(r, i)) for i in kept}
    assert out.item_ids == sorted(kept, key=lambda i: (-adjusted[i], IDS.index(i)))
    ruleset = RuleSet(RulesConfig(), active)
    again = RuleSet.apply(active, IDS, SCORES, len(IDS), FACTS, None, ruleset.index(active))
    assert again == out and ruleset.index(active) is ruleset.index(list(active))  # kept per active set


# -- query-targeted rules (search only) ---------------------------------------------------
def test_a_query_targeted_rule_applies_only_to_searches_holding_its_phrase():
    drills = rule(1, "boost", {"brand": "zeta"}, weight=1.0, queries=["Cordless  Drill", "saw"])
    always = rule(2, "exclude", {"items": ["a"]})
    rules = RuleSet(RulesConfig(), [drills, always])
    anyone = Audience()
    assert rules.active(NOW, anyone, "cordless drill 18v") == [drills, always]
    assert rules.active(NOW, anyone, "CORDLESS-DRILL") == [drills, always]  # words, not punctuation
    assert rules.active(NOW, anyone, "table saw") == [drills, always]
    assert rules.active(NOW, anyone, "drill cordless") == [always]  # a phrase keeps its order
    assert rules.active(NOW, anyone, "saws") == [always]  # whole words only
    assert rules.active(NOW, anyone, None) == [always]  # recommendations: never
    out = apply(rules.active(NOW, anyone, "cordless drill"))
    assert out.item_ids == ["b", "d", "f", "c"]  # zeta lifted, a excluded


def test_query_phrases_are_checked_and_kept_normalized():
    r = check_rule("bury", {"tag": "sale"}, weight=0.5, queries=["  Garden HOSE ", "garden hose", "Hose!"])
    assert r.queries == ("garden hose", "hose")
    assert r.spec()["queries"] == ["garden hose", "hose"]
    assert "queries" not in check_rule("bury", {"tag": "sale"}, weight=0.5).spec()  # older rules unchanged
    for bad in (["--"], [""], ["x" * 201], "drill", ["ok"] * 101):
        with pytest.raises(RuleError, match="queries"):
            check_rule("boost", {"brand": "acme"}, weight=1.0, queries=bad)
