"""`shopformer report online` over a store: the table and JSON against hand-computed
numbers, grouping by variant and position, the PNG plot."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from shopformer.cli import app
from shopformer.feedback.online_report import parse_since
from shopformer.store import EventStore, StoreConfig

runner = CliRunner()
NOW = datetime.now(timezone.utc)
DAY = NOW - timedelta(days=1)


def invoke(*args, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def url(tmp_path) -> str:
    """Four answers in the last week (two per model version) and one older; their events.

    v1: r1 [i1 i2 i3] click i2 (2), cart i2, purchase 4 x i2 (4 x 2.5 = 10); r2 [i2 i1] click i1 (2)
    v2: r3 [i3] click i3 (1); r4 [i1] purchase 3 x i1 (3 x 10 = 30)
    old (10 days, v1): r0 [i1] click i1 -- before --since 7d"""
    url = f"sqlite:///{tmp_path / 'shop.db'}"

    def imp(rid, at, version, variant, placement, items):
        return {"request_id": rid, "shown_at": at, "user_id": f"user-{rid}", "placement": placement,
                "route": "user_recommendations", "model_name": "sasrec", "model_version": version,
                "experiment": "exp", "variant": variant, "strategy": "history", "item_ids": items}

    def ev(eid, etype, item, rid, value=None):
        return {"event_id": eid, "user_id": f"user-{rid}", "item_id": item, "event_type": etype, "value": value,
                "timestamp": DAY + timedelta(minutes=5), "context": json.dumps({"request_id": rid})}

    with EventStore(StoreConfig(url)) as store:
        store.upsert_products([{"item_id": "i1", "price": 10.0}, {"item_id": "i2", "price": 2.5},
                               {"item_id": "i3", "price": 7.0}])
        store.add_impressions([imp("r0", NOW - timedelta(days=10), "v1", "a", "home", ["i1"]),
                               imp("r1", DAY, "v1", "a", "home", ["i1", "i2", "i3"]),
                               imp("r2", DAY, "v1", "a", "home", ["i2", "i1"]),
                               imp("r3", DAY, "v2", "b", "pdp", ["i3"]),
                               imp("r4", DAY, "v2", "b", "pdp", ["i1"])])
        store.add_events([ev("e1", "click", "i2", "r1"), ev("e2", "add_to_cart", "i2", "r1", 1),
                          ev("e3", "purchase", "i2", "r1", 4), ev("e4", "click", "i1", "r2"),
                          ev("e5", "click", "i3", "r3"), ev("e6", "purchase", "i1", "r4", 3),
                          {**ev("e7", "click", "i1", "r0"), "timestamp": NOW - timedelta(days=10)},
                          {"event_id": "e8", "user_id": "x", "item_id": "i1", "event_type": "view", "timestamp": DAY}])
    return url


def test_json_by_model_version(url):
    out = json.loads(invoke("report", "online", "--store", url, "--since", "7d", "--json"))
    rows = {r["model_version"]: r for r in out["groups"]}
    assert set(rows) == {"v1", "v2"} and out["by"] == "model_version"
    v1, v2, total = rows["v1"], rows["v2"], out["total"]
    assert (v1["answers"], v1["answers_clicked"], v1["answers_carted"], v1["answers_purchased"]) == (2, 2, 1, 1)
    assert (v1["ctr"], v1["atc_rate"], v1["purchase_rate"], v1["revenue"], v1["revenue_per_answer"]) == (
        1.0, 0.5, 0.5, 10.0, 5.0)
    assert (v2["answers"], v2["ctr"], v2["atc_rate"], v2["purchase_rate"], v2["revenue"], v2["revenue_per_answer"]) == (
        2, 0.5, 0.0, 0.5, 30.0, 15.0)
    assert (total["answers"], total["ctr"], total["atc_rate"], total["purchase_rate"], total["revenue_per_answer"]) == (
        4, 0.75, 0.25, 0.5, 10.0)
    assert [(d["model_version"], d["answers"]) for d in out["daily"]] == [("v1", 2), ("v2", 2)]


def test_table_by_variant_and_by_position(url):
    out = invoke("report", "online", "--store", url, "--since", "7d", "--by", "variant")
    cells = [[c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if line.startswith("│")]
    rows = {r[0]: r[1:] for r in cells}
    assert rows["a"] == ["2", "2", "100.00%", "50.00%", "50.00%", "10.00", "5.00"]
    assert rows["b"] == ["2", "1", "50.00%", "0.00%", "50.00%", "30.00", "15.00"]
    assert rows["all"] == ["4", "3", "75.00%", "25.00%", "50.00%", "40.00", "10.00"]
    out = json.loads(invoke("report", "online", "--store", url, "--since", "7d", "--by", "position", "--json"))
    got = {r["bucket"]: (r["shown"], r["clicks"], r["purchases"], r["ctr"]) for r in out["groups"]}
    # slots shown: position 1 in all four answers, 2 in r1 and r2, 3 in r1
    assert got["1"] == (4, 1, 1, 0.25) and got["2"] == (2, 2, 1, 1.0) and got["3"] == (1, 0, 0, 0.0)
    assert got["not_shown"] == (None, 0, 0, None)
    # everything since 30 days: the old answer (v1, clicked) joins
    old = json.loads(invoke("report", "online", "--store", url, "--since", "30d", "--json"))
    assert {r["model_version"]: r["answers"] for r in old["groups"]} == {"v1": 3, "v2": 2}


def test_plot_is_written(url, tmp_path):
    png = tmp_path / "plots" / "online.png"
    invoke("report", "online", "--store", url, "--plot", png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bad_options_say_what_is_wrong(url):
    assert "--since 'lately'" in invoke("report", "online", "--store", url, "--since", "lately", code=2)
    assert "--by 'colour'" in invoke("report", "online", "--store", url, "--by", "colour", code=2)


def test_parse_since():
    now = datetime(2024, 5, 8, 12, tzinfo=timezone.utc)
    assert parse_since("7d", now) == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert parse_since("36h", now) == datetime(2024, 5, 7, tzinfo=timezone.utc)
    assert parse_since("2w", now) == now - timedelta(weeks=2) and parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2024-05-01", now) == datetime(2024, 5, 1, tzinfo=timezone.utc)
