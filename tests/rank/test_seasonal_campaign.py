"""A Christmas campaign as a business rule: boost a category between two dates (UTC),
and the model's own order before and after."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from shopformer.rank.rules import Audience, ItemFacts, Move, RulesConfig, RuleSet
from shopformer.store.rules import check_rule

IDS = ["mug", "lamp", "bauble", "wreath", "rug"]
SCORES = [5.0, 4.0, 3.0, 2.0, 1.0]
FACTS = {i: ItemFacts(("christmas",) if i in ("bauble", "wreath") else ("home",)) for i in IDS}
CAMPAIGN = replace(check_rule("boost", {"category": "christmas"}, weight=1.0,
                              starts_at=datetime(2026, 11, 15, tzinfo=timezone.utc),
                              ends_at=datetime(2026, 12, 25, tzinfo=timezone.utc)), rule_id=7)


def answer(when: datetime) -> tuple[list[str], list[Move]]:
    active = RuleSet(RulesConfig(), [CAMPAIGN]).active(when, Audience("u1", True))
    out = RuleSet.apply(active, IDS, SCORES, 3, FACTS)
    return out.item_ids, out.moves


def test_the_campaign_lifts_its_category_only_inside_its_window():
    ids, moves = answer(datetime(2026, 12, 1, 9, tzinfo=timezone.utc))
    assert ids == ["bauble", "wreath", "mug"]  # 0.5 + 1 and 0.25 + 1 pass mug's 1.0
    assert moves == [Move(7, "bauble", "boosted", 3, 1), Move(7, "wreath", "boosted", 4, 2)]
    assert answer(datetime(2026, 11, 14, 23, 59, tzinfo=timezone.utc)) == (["mug", "lamp", "bauble"], [])
    assert answer(datetime(2026, 12, 25, tzinfo=timezone.utc)) == (["mug", "lamp", "bauble"], [])  # end exclusive
