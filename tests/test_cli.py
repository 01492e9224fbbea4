"""The CLI end to end on a small shop: ingest -> train -> evaluate -> recommend."""

import json
import math

from typer.testing import CliRunner

from shopformer.cli import app

runner = CliRunner()

# Two groups of customers who each buy all four items of their group, in rotating
# orders. The test target is the one group item not in the history, and the only one
# that co-occurs with it: with history items excluded it must rank first.
ROTATIONS = [[1, 2, 3, 4], [2, 3, 4, 1], [3, 4, 1, 2], [4, 1, 2, 3]]
LINES = [
    f"{g}{i}{r} " + " ".join(str(x + off) for x in rot)
    for g, off in (("a", 0), ("b", 4)) for i in range(3) for r, rot in enumerate(ROTATIONS)
]


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_ingest_train_evaluate_recommend(tmp_path):
    src = tmp_path / "shop.txt"
    src.write_text("\n".join(LINES) + "\n")
    data = tmp_path / "data"
    invoke("ingest", src, "--format", "sequence", "--data", data)
    report = json.loads((data / "ingest_report.json").read_text())
    assert report["rows_accepted"] == 96

    run = tmp_path / "run"
    invoke("train", "--data", data, "--model", "itemknn", "--set", "shrink=0", "--out", run)
    assert (run / "run.json").exists() and (run / "items.json").exists()

    incl = tmp_path / "incl.json"
    invoke("evaluate", "--run", run, "--k", "1,2", "--include-history", "--out", incl)
    assert json.loads(incl.read_text())[0]["eval_config"]["exclude_history"] is False

    out = tmp_path / "res.json"
    invoke("evaluate", "--run", run, "--k", "1,2", "--out", out)
    record = json.loads(out.read_text())[0]
    assert record["eval_config"]["exclude_history"] is True
    assert record["model"] == "itemknn" and record["users_evaluated"] == 24

    recs = tmp_path / "recs.jsonl"
    invoke("recommend", "--run", run, "--split", "test", "--k", "2", "--out", recs)
    lines = [json.loads(x) for x in recs.read_text().splitlines()]
    assert len(lines) == 24 and {x["user_id"] for x in lines} == {l.split()[0] for l in LINES}
    # re-score the export by hand: it must give the evaluate command's numbers
    targets = {l.split()[0]: l.split()[-1] for l in LINES}
    hits = [x["items"].index(targets[x["user_id"]]) if targets[x["user_id"]] in x["items"] else None for x in lines]
    hr = sum(h is not None for h in hits) / len(hits)
    ndcg = sum(1 / math.log2(h + 2) for h in hits if h is not None) / len(hits)
    assert round(hr, 6) == round(record["metrics"]["HR@2"], 6)
    assert round(ndcg, 6) == round(record["metrics"]["NDCG@2"], 6)
    assert hr == 1.0  # the target always co-occurs with the history: a known answer


def test_bad_inputs_give_messages_not_tracebacks(tmp_path):
    r = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "none"), "--model", "ease"])
    assert r.exit_code == 2 and "run `shopformer ingest` first" in r.output
    r = runner.invoke(app, ["train", "--data", str(tmp_path), "--model", "nope"])
    assert r.exit_code == 2 and "unknown model 'nope'" in r.output
    r = runner.invoke(app, ["evaluate", "--run", str(tmp_path)])
    assert r.exit_code == 2 and "not a trained run" in r.output


def test_train_with_product_content_and_content_knn(tmp_path):
    src = tmp_path / "shop.txt"
    src.write_text("\n".join(LINES) + "\n")
    catalog = tmp_path / "catalog.csv"  # items 1-4 are brand a, 5-8 brand b
    catalog.write_text("item_id,brand,price\n" + "".join(f"{i},{'a' if i <= 4 else 'b'},{i}.0\n" for i in range(1, 9)))
    data = tmp_path / "data"
    invoke("ingest", src, "--format", "sequence", "--catalog", catalog, "--data", data)

    run = tmp_path / "fused"
    invoke("train", "--data", data, "--model", "sasrec", "--content", "brand", "--out", run,
           "--set", "arch.d_model=8", "--set", "arch.n_heads=1", "--set", "train.epochs=2")
    config = json.loads((run / "model" / "config.json").read_text())
    names = json.loads((run / "model" / "content.json").read_text())["token_names"]
    assert {"brand=a", "brand=b"} <= set(names) and config["arch"]["content_tokens"] == len(names)
    out = tmp_path / "fused.json"
    invoke("evaluate", "--run", run, "--k", "1,2", "--out", out)
    assert json.loads(out.read_text())[0]["users_evaluated"] == 24

    knn = tmp_path / "knn"
    invoke("train", "--data", data, "--model", "content_knn", "--content", "brand", "--out", knn)
    out = tmp_path / "knn.json"
    invoke("evaluate", "--run", knn, "--k", "1,2,3", "--out", out)
    # the target is the one item of the history's brand that the history lacks: the only
    # candidate sharing the brand, so content alone ranks it first
    assert json.loads(out.read_text())[0]["metrics"]["HR@1"] == 1.0

    bad = runner.invoke(app, ["train", "--data", str(data), "--model", "ease", "--content", "brand",
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "does not use product content" in bad.output


def test_train_with_precomputed_vectors(tmp_path):
    """Image-style vectors from a file are the only content: they put items 1-4 and 5-8
    in two directions, so content kNN finds the group's missing item from them alone."""
    import numpy as np

    src = tmp_path / "shop.txt"
    src.write_text("\n".join(LINES) + "\n")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,title\n" + "".join(f"{i},item {i}\n" for i in range(1, 9)))
    data = tmp_path / "data"
    invoke("ingest", src, "--format", "sequence", "--catalog", catalog, "--data", data)
    vectors = tmp_path / "images.npz"
    rows = np.array([[1.0, 0.0] if i <= 4 else [0.0, 1.0] for i in range(1, 9)])
    np.savez(vectors, item_id=np.array([str(i) for i in range(1, 9)]), vectors=rows)

    knn = tmp_path / "knn"
    invoke("train", "--data", data, "--model", "content_knn", "--vectors", vectors, "--out", knn)
    out = tmp_path / "knn.json"
    invoke("evaluate", "--run", knn, "--k", "1", "--out", out)
    assert json.loads(out.read_text())[0]["metrics"]["HR@1"] == 1.0

    fused = tmp_path / "fused"
    invoke("train", "--data", data, "--model", "sasrec", "--vectors", vectors, "--out", fused,
           "--set", "arch.d_model=8", "--set", "arch.n_heads=1", "--set", "train.epochs=1")
    config = json.loads((fused / "model" / "config.json").read_text())
    content = json.loads((fused / "model" / "content.json").read_text())
    assert config["arch"]["content_dim"] == 2 and content["config"]["image_dim"] == 2

    bad = tmp_path / "bad.npz"
    np.savez(bad, item_id=np.array(["1", "1"]), vectors=np.zeros((2, 2)))
    result = runner.invoke(app, ["train", "--data", str(data), "--model", "content_knn", "--vectors", str(bad),
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "row 2: item_id '1' repeats row 1" in result.output


def invoke_json(*args):
    """JSON from stdout (the text model's loading bars go to stderr)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_search_command(tmp_path):
    """`shopformer search` builds the run's index once, answers, personalizes, and the
    demo's search step prints what it found."""
    src = tmp_path / "shop.txt"
    src.write_text("\n".join(LINES) + "\n")
    catalog = tmp_path / "catalog.csv"
    titles = {1: "Red Mug", 2: "Blue Mug", 3: "Tea Pot", 4: "Kettle", 5: "Garden Hose", 6: "Rake", 7: "Red Shovel",
              8: "Gloves"}
    catalog.write_text("item_id,title,categories\n" + "".join(
        f"{i},{t},{'kitchen' if i <= 4 else 'garden'}\n" for i, t in titles.items()))
    data = tmp_path / "data"
    invoke("ingest", src, "--format", "sequence", "--data", data, "--catalog", catalog)
    run = tmp_path / "run"
    invoke("train", "--data", data, "--model", "itemknn", "--set", "shrink=0", "--out", run)

    out = invoke_json("search", "red mugs", "--run", run, "--json", "--k", "3")
    assert [h["item_id"] for h in out["hits"]][:1] == ["1"] and (run / "search" / "search.json").exists()
    out = invoke_json("search", "red", "--run", run, "--json", "--category", "garden")
    assert out["hits"][0]["item_id"] == "7" and {h["item_id"] for h in out["hits"]} <= {"5", "6", "7", "8"}
    out = invoke_json("search", "kettel", "--run", run, "--json")
    assert out["corrected_query"] == "kettle" and out["hits"][0]["item_id"] == "4"
    # personalized: a garden customer sees the red shovel above the red mug
    garden = next(l.split()[0] for l in LINES if l.startswith("b"))
    out = invoke_json("search", "red", "--run", run, "--json", "--user", garden, "--personal-weight", "5")
    assert out["hits"][0]["item_id"] == "7" and out["strategy"].endswith("+personal")
    table = invoke("search", "red", "--run", run)
    assert "Red Mug" in table and "Red Shovel" in table
    bad = runner.invoke(app, ["search", "red", "--run", run, "--user", "nobody"])
    assert bad.exit_code == 2 and "unknown user" in bad.output

    from rich.console import Console

    from shopformer import demo

    con = Console(record=True, width=200)
    demo._show_searches(run, con)
    assert "'red heart'" in con.export_text()


def test_train_reranker_command(tmp_path):
    src = tmp_path / "shop.txt"
    src.write_text("\n".join(LINES) + "\n")
    catalog = tmp_path / "catalog.csv"
    nouns = ["Mug", "Pot", "Kettle", "Hose", "Rake", "Shovel", "Gloves", "Cup"]
    catalog.write_text("item_id,title\n" + "".join(f"{i},Cordless {n}\n" for i, n in enumerate(nouns, 1))
                       + "".join(f"{i + 8},{n} {n} Holder Bracket Kit {n}\n" for i, n in enumerate(nouns, 1)))
    data = tmp_path / "data"
    invoke("ingest", src, "--format", "sequence", "--data", data, "--catalog", catalog)
    run = tmp_path / "run"
    invoke("train", "--data", data, "--model", "popular", "--out", run)
    judged = tmp_path / "judged.csv"
    judged.write_text("query,item_id,relevance\n" + "".join(
        f"{n.lower()},{i},3\n{n.lower()},{i + 8},1\n" for i, n in enumerate(nouns, 1)) + "mug holder,9,3\nmugs,1,3\n")
    out = invoke("train-reranker", "--judgments", judged, "--run", run, "--gain-offset", "1")
    assert "re-ranker trained on 10 queries" in out and (run / "search" / "reranker" / "model.txt").exists()
    found = invoke_json("search", "kettle", "--run", run, "--json")
    assert found["strategy"].endswith("+rerank")
    bad = tmp_path / "bad.csv"
    bad.write_text("query,item_id,relevance\nmug,1,high\n")
    r = runner.invoke(app, ["train-reranker", "--judgments", str(bad), "--run", str(run)])
    assert r.exit_code == 2 and "line 2" in r.output
