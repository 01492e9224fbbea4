"""int8 quantization of a run (models/quantize.py): the quantized folder reloads alone,
says how it was made, scores close to its float parent, and is served unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shopformer.artifact import load_run, make_model, run_version
from shopformer.dataset import DataConfig
from shopformer.experiment import train_run
from shopformer.features.sequences import Sequences
from shopformer.ingest.api import ingest
from shopformer.models.quantize import QuantizeConfig, in_blocks, is_quantized, parameter_count, quantize_run

pytest.importorskip("torchao")

N_ITEMS = 40
TINY = {"arch.max_len": "10", "arch.d_model": "32", "arch.n_layers": "2", "arch.n_heads": "2", "arch.dropout": "0",
        "train.epochs": "4", "train.batch_size": "64", "train.lr": "0.01", "train.warmup_steps": "5",
        "train.threads": "1"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Users walk the catalog in steps of 1 or 3 (their own), 1 in 5 steps random."""
    root = tmp_path_factory.mktemp("quantize")
    rng = np.random.default_rng(1)
    lines, sequences = [], {}
    for u in range(300):
        item, stride = int(rng.integers(N_ITEMS)), 1 + 2 * (u % 2)
        seq = []
        for _ in range(9):
            seq.append(f"i{item}")
            item = (item + stride) % N_ITEMS if rng.random() > 0.2 else int(rng.integers(N_ITEMS))
        lines.append(f"u{u} " + " ".join(seq))
        sequences[f"u{u}"] = seq
    (root / "seq.txt").write_text("\n".join(lines) + "\n")
    ingest(root / "seq.txt", "sequence", root / "data")
    run = train_run(make_model("sasrec", TINY), root / "data", DataConfig(), root / "float", fit_on="all")
    histories = Sequences.from_lists([[int(i) for i in rng.integers(1, N_ITEMS + 1, size=int(n))]
                                      for n in rng.integers(1, 11, size=64)])
    return {"root": root, "data": root / "data", "run": run, "histories": histories, "sequences": sequences}


def top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of the float top-10 that the quantized top-10 keeps."""
    ta, tb = np.argsort(-a, axis=1)[:, :10], np.argsort(-b, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ta, tb)]))


@pytest.mark.parametrize("library", ["torchao", "torch.ao"])
def test_quantized_run_reloads_alone_and_scores_close_to_float(shop, tmp_path, library):
    out = tmp_path / f"int8-{library}"
    q = quantize_run(shop["run"].folder, out, QuantizeConfig(library=library))
    assert q.info["quantized"] == "int8-dynamic" and q.info["library"].startswith(library + " ")
    assert q.info["quantized_from"]["version"] == run_version(shop["run"].folder)
    record = json.loads((out / "model" / "quantization.json").read_text())
    assert record["layers"] == 2 * 4  # per block: qkv, out, two feed-forward layers
    again = load_run(out)  # a fresh process would do exactly this
    assert is_quantized(again.model.module) and not is_quantized(shop["run"].model.module)
    # the item table is float32 and the parent's, untouched
    assert torch.equal(again.model.output_table(), shop["run"].model.output_table())
    assert parameter_count(again.model.module) == parameter_count(shop["run"].model.module)
    float_scores = shop["run"].model.score(shop["histories"])[:, 1:]
    int8_scores = again.model.score(shop["histories"])[:, 1:]
    # int8 per-channel weights and per-token activations perturb each hidden unit by well
    # under 1% of its range; only near-ties in the top-10 can swap, so at least 9 of the
    # 10 float answers stay on average, and the scores keep their order almost everywhere
    assert top10_overlap(float_scores, int8_scores) >= 0.9
    rank_corr = np.mean([np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
                         for a, b in zip(float_scores, int8_scores)])
    assert rank_corr > 0.99
    assert not np.array_equal(float_scores, int8_scores)  # the int8 layers are what ran


def test_only_the_transformer_blocks_are_quantized():
    assert in_blocks("blocks.0.attn.qkv") and in_blocks("members.1.blocks.0.ffn.0")
    assert not in_blocks("content.proj") and not in_blocks("item_emb")


def test_refusals(shop, tmp_path):
    with pytest.raises(ValueError, match="new folder"):
        quantize_run(shop["run"].folder, shop["run"].folder)
    q = quantize_run(shop["run"].folder, tmp_path / "q")
    with pytest.raises(ValueError, match="already quantized"):
        quantize_run(q.folder, tmp_path / "qq")
    with pytest.raises(ValueError, match="not empty"):
        quantize_run(shop["run"].folder, tmp_path / "q")
    with pytest.raises(ValueError, match="library"):
        quantize_run(shop["run"].folder, tmp_path / "x", QuantizeConfig(library="onnx"))  # type: ignore[arg-type]


def test_the_server_answers_from_a_quantized_run(shop, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from shopformer.serve import ServeSettings, create_app
    from shopformer.store import EventStore, StoreConfig, import_folder

    q = quantize_run(shop["run"].folder, tmp_path / "served-int8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    # only what recommendations need: no search, pages or impression log to start
    settings = ServeSettings(store_url=url, run=q.folder, api_key="k", cache_ttl_s=0, index="exact", search=False,
                             storefront=False, console=False, impressions=None)
    with TestClient(create_app(settings), headers={"X-API-Key": "k"}) as client:
        r = client.get("/v1/users/u1/recommendations", params={"k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["version"].startswith("served-int8-") and body["strategy"] == "history"
    served = [x["item_id"] for x in body["items"]]
    # the float parent's own top 10 for u1, its history left out as served: int8 keeps most
    run = shop["run"]
    history = run.items.encode(shop["sequences"]["u1"])
    scores = run.model.score(Sequences.from_lists([history.tolist()]))[0]
    scores[history] = -np.inf
    parent = run.items.decode(np.argsort(-scores)[:10])
    assert len(served) == 10 and len(set(served) & set(parent)) >= 7, (served, parent)


def test_an_int8_run_is_its_own_int8_copy_for_explanations(shop, tmp_path):
    q = quantize_run(shop["run"].folder, tmp_path / "explained")
    assert q.model.int8_copy() is q.model.module  # occlusion's precision=int8 reads it as is


def test_quantize_command(shop, tmp_path):
    from typer.testing import CliRunner

    from shopformer.cli import app

    out = tmp_path / "cli-int8"
    res = CliRunner().invoke(app, ["quantize", "--run", str(shop["run"].folder), "--out", str(out),
                                   "--library", "torch.ao"])
    assert res.exit_code == 0, res.output
    assert "int8-dynamic (torch.ao" in res.output and load_run(out).info["library"].startswith("torch.ao ")
    bad = CliRunner().invoke(app, ["quantize", "--run", str(shop["run"].folder), "--out", str(tmp_path / "b"),
                                   "--library", "onnx"])
    assert bad.exit_code == 2 and "--library" in bad.output
