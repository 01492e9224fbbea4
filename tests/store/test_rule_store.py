"""Business rules in the store (SQLite, and PostgreSQL when SHOPFORMER_TEST_POSTGRES_URL
is set): add, list, remove, the version every process follows, and a reopened store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shopformer.store import EventStore
from shopformer.store.rules import RuleError, add_rule, all_rules, check_rule, get_rule, remove_rule, rules_version





def test_rules_round_trip_bump_the_version_and_survive_reopening(store_config):
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with EventStore(store_config) as store:
        assert all_rules(store) == [] and rules_version(store) == ""
        pin = add_rule(store, check_rule("pin", {"items": ["a"]}, position=2, priority=3, starts_at=start,
                                         ends_at=start + timedelta(days=26), note="advent"), "tester")
        v1 = rules_version(store)
        boost = add_rule(store, check_rule("boost", {"brand": " acme "}, weight=0.5, audience=["u1", "u2", "u1"]))
        v2 = rules_version(store)
        assert v1 and v2 and v1 != v2
        assert boost.rule_id > pin.rule_id
    with EventStore(store_config) as store:  # stored: a restart keeps them
        found = all_rules(store)
        assert [r.rule_id for r in found] == [pin.rule_id, boost.rule_id]
        assert found[0].kind == "pin" and found[0].position == 2 and found[0].priority == 3
        assert found[0].starts_at == start and found[0].ends_at == start + timedelta(days=26)
        assert found[0].note == "advent" and found[0].created_by == "tester"
        assert found[1].match == {"brand": "acme"} and found[1].weight == 0.5 and found[1].audience == ("u1", "u2")
        removed = remove_rule(store, pin.rule_id)
        assert removed == found[0] and get_rule(store, pin.rule_id) is None
        assert rules_version(store) != v2
        with pytest.raises(RuleError, match="no rule"):
            remove_rule(store, pin.rule_id)
        assert [r.rule_id for r in all_rules(store)] == [boost.rule_id]
