"""`shopformer explain USER --run RUN` end to end on a tiny shop, values checked by hand."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from shopformer.cli import app

torch.set_num_threads(1)
runner = CliRunner()

# Two clusters: kitchen a-d, garden e-h. Each kitchen pair of (a|b|c, d) has 2 common
# customers and every kitchen item 3 customers, so with cosine item-kNN (shrink 0)
# u1 (history a b c) scores d at 3 x 2/3 = 2, each event carrying 2/3 (a third).
SEQUENCES = "u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\nu5 e f h\nu6 f g h\nu7 a c d\n"
CATALOG = """\
item_id,title,price,categories,brand
a,Apron,1,kitchen,acme
b,Bowl,2,kitchen,acme
c,Cup,3,kitchen|cups,zeta
d,Dish,4,kitchen,acme
e,Edger,5,garden,gro
f,Fork,6,garden,gro
g,Gloves,7,garden,gro
h,Hose,8,garden,gro
"""


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    invoke("ingest", root / "seq.txt", "--format", "sequence", "--catalog", root / "catalog.csv", "--data", root / "data")
    invoke("train", "--data", root / "data", "--model", "itemknn", "--set", "shrink=0", "--full", "--out", root / "run")
    return root / "run"


def test_explain_json_has_all_four_kinds_of_reasons(run):
    out = json.loads(invoke("explain", "u1", "--run", run, "--k", "2", "--json").stdout)
    assert out["user_id"] == "u1" and out["history"] == ["a", "b", "c"]
    dish, second = out["items"]
    assert dish["item_id"] == "d" and dish["score"] == pytest.approx(2.0)
    # (a) occlusion: each event removes 2/3 of the score, ties listed most recent first
    assert [(e["item_id"], e["position"], e["title"], e["event_type"]) for e in dish["events"]] == [
        ("c", 2, "Cup", "purchase"), ("b", 1, "Bowl", "purchase"), ("a", 0, "Apron", "purchase")]
    assert [e["attribution"] for e in dish["events"]] == pytest.approx([2 / 3] * 3, abs=1e-5)
    assert [e["share"] for e in dish["events"]] == pytest.approx([1 / 3] * 3, abs=1e-3)
    assert dish["events_tested"] == 3 and dish["history_length"] == 3
    # (b) two customers have d with each of a, b, c; three customers have d
    assert [(c["item_id"], c["customers"]) for c in dish["collaborative"]] == [("c", 2), ("b", 2), ("a", 2)]
    assert dish["item_customers"] == 3
    # (c) d shares its category with a, b, c and its brand with b, a (not c: zeta)
    shared = {(s["field"], s["value"]): s["item_ids"] for s in dish["content"]["shared"]}
    assert shared == {("categories", "kitchen"): ["c", "b", "a"], ("brand", "acme"): ["b", "a"]}
    # (d) d is the model's first choice; e (score 0) came 5th, after d and the history
    assert dish["rules"]["model_rank"] == 1 and dish["rules"]["rules"] == []
    assert second["item_id"] == "e" and second["rules"]["model_rank"] == 5 and second["rules"]["final_rank"] == 2
    assert second["rules"]["rules"] == [{"rule": "excluded: already in history", "removed_above": 3}]
    assert dish["sentence"] == ("Because you bought Cup and Bowl; 2 customers who bought Cup also bought this; "
                                "same category (kitchen) as Cup.")
    assert second["events"] == [] and second["sentence"] == "Popular: 2 customers bought this."


def test_explain_table_and_heatmap(run, tmp_path):
    png = tmp_path / "why.png"
    result = invoke("explain", "u1", "--run", run, "--k", "3", "--plot", png)
    assert "Dish" in result.stdout and "Because you bought Cup" in result.stdout and "model rank 1" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_explain_unknown_user_is_a_message(run):
    result = runner.invoke(app, ["explain", "ghost", "--run", str(run)])
    assert result.exit_code == 2 and "unknown user 'ghost'" in result.output
