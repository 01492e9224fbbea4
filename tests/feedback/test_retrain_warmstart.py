"""Warm start (feedback/warmstart.py): the new run keeps the current items' indexes and
starts from the current network's weights; new items get new rows (fresh for an
ID-only model, at their content's place for a fused one); content tokens are mapped by
name. Checked on the tensors, with a learning rate of 0 so that fine-tuning moves
nothing and the weights after fit are the starting point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shopformer.artifact import make_model
from shopformer.experiment import train_run
from shopformer.features.content import ContentConfig
from shopformer.feedback.retrain import retrain
from shopformer.feedback.warmstart import can_warm_start, train_like
from shopformer.store import EventStore, StoreConfig, export_snapshot
from shopformer.store.versions import list_versions

from test_retrain import CONFIG, EARLY, LATE, ROUND, SASREC, make_store, shop  # noqa: E402, F401 - fixtures

FROZEN = {**SASREC, "train.lr": "0", "train.epochs": "1"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("warm")
    for name, events in (("early", EARLY), ("all", EARLY + LATE)):
        with EventStore(StoreConfig(make_store(root / f"{name}.db", events))) as store:
            export_snapshot(store, root / name)
    return {"root": root, "early": root / "early", "all": root / "all"}


def test_id_only_rows_are_kept_and_new_items_get_fresh_rows(folders, tmp_path):
    current = train_run(make_model("sasrec", FROZEN), folders["early"], CONFIG, tmp_path / "v0")
    n_old = len(current.items)
    trained = train_like(current, folders["all"], tmp_path / "v1", warm=True)
    new = trained.run
    assert new.items.ids[:n_old] == current.items.ids and len(new.items) == n_old + 20
    assert (trained.items_kept, trained.items_added) == (n_old, 20) and new.info["fixed_items"] is True
    before, after = (dict(m.module.named_parameters()) for m in (current.model, new.model))
    emb0, emb1 = before["item_emb.weight"], after["item_emb.weight"]
    assert emb1.shape == (n_old + 20 + 2, emb0.shape[1])
    assert torch.equal(emb1[: n_old + 1], emb0[: n_old + 1])  # padding and the kept items
    assert torch.equal(emb1[-1], emb0[-1])  # [MASK]
    fresh = emb1[n_old + 1 : -1]
    assert fresh.abs().sum(1).min() > 0 and 0.01 < fresh.std().item() < 0.04  # the network's own init
    for name, tensor in before.items():  # every other parameter: copied
        if name != "item_emb.weight":
            assert torch.equal(after[name], tensor), name


def test_fused_content_rows_start_at_their_content_and_tokens_map_by_name(folders, tmp_path):
    current = train_run(make_model("sasrec", FROZEN), folders["early"], CONFIG, tmp_path / "v0",
                        content=ContentConfig(fields=("categories",), price_bands=0))
    n_old = len(current.items)
    new = train_like(current, folders["all"], tmp_path / "v1", warm=True).run
    m0, m1 = current.model.module, new.model.module
    emb0, emb1 = m0.item_emb.weight.detach(), m1.item_emb.weight.detach()
    assert torch.equal(emb1[: n_old + 1], emb0[: n_old + 1]) and torch.equal(emb1[-1], emb0[-1])
    assert torch.count_nonzero(emb1[n_old + 1 : -1]) == 0  # ID rows of new items: 0, content places them
    names0, names1 = current.model.content.token_names, new.model.content.token_names
    assert "categories=a-new" in names1 and "categories=a-new" not in names0
    assert names1.index("categories=c0") != names0.index("categories=c0")  # the new token sorts first
    tok0, tok1 = m0.content.token_emb.weight.detach(), m1.content.token_emb.weight.detach()
    for name in names0:
        assert torch.equal(tok1[names1.index(name)], tok0[names0.index(name)]), name
    # a new product's representation is its content's: the new category's token embedding
    table = new.model.item_representations()
    item = n_old + 1  # the first new product (all new ones are in the fifth chain)
    assert torch.allclose(table[item], tok1[names1.index("categories=a-new")])


def test_baselines_are_refitted_from_scratch(shop, tmp_path):  # noqa: F811 - the fixture
    current = train_run(make_model("itemknn", {}), shop["early"], CONFIG, tmp_path / "knn")
    assert "no iterative training" in can_warm_start(current)
    with pytest.raises(ValueError, match="cannot warm-start"):
        train_like(current, shop["early"], None, warm=True)
    said = []
    with EventStore(StoreConfig(make_store(tmp_path / "shop.db"))) as store:
        o = retrain(store, tmp_path / "knn", tmp_path / "knn2", tmp_path / "data", ROUND, "cli:test", said.append)
        assert o.status in ("promoted", "refused") and list_versions(store)[-1].mode == "scratch"
    assert any("refitting from scratch" in s for s in said)
    assert "fixed_items" not in o.version.to_dict()["metrics"] and o.details["items"]["kept"] == 0


def test_a_run_trained_on_a_gpu_retrains_wherever_the_retraining_runs(folders, tmp_path):
    from dataclasses import replace

    from shopformer.feedback.warmstart import same_model

    current = train_run(make_model("sasrec", FROZEN), folders["early"], CONFIG, tmp_path / "v0")
    cfg = current.model.config
    current.model.config = replace(cfg, train=replace(cfg.train, device="cuda"))  # as saved by a GPU run
    assert same_model(current).config.train.device == "auto"
