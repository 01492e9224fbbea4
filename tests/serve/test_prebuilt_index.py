"""Vector indexes built offline into the run folder (`shopformer index`): a server loads
them, memory-mapped, instead of building them at start-up, answers as the built ones do,
and never serves an index built for other weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("fastapi")

from typer.testing import CliRunner  # noqa: E402

from test_index_serving import SASREC, service, shop  # noqa: E402,F401

from shopformer.artifact import make_model  # noqa: E402
from shopformer.cli import app  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("restore_threads")


@pytest.fixture
def run(shop, tmp_path):
    folder = tmp_path / "sasrec"
    shutil.copytree(shop["root"] / "sasrec", folder)
    return folder


def served_with(shop, folder):
    linked = shop["root"] / f"linked-{folder.parent.name}"
    shutil.rmtree(linked, ignore_errors=True)
    shutil.copytree(folder, linked)
    return service(shop, linked.name, "faiss")


def test_a_prebuilt_index_is_loaded_and_answers_like_exact_search(shop, run):
    out = CliRunner().invoke(app, ["index", "--run", str(run), "--kind", "hnsw"])
    assert out.exit_code == 0, out.output
    meta = json.loads((run / "index" / "prebuilt.json").read_text())
    assert meta["kind"] == "hnsw" and meta["items"] == 40
    svc, exact = served_with(shop, run), service(shop, "sasrec", "exact")
    try:
        vectors = svc.require().vectors
        assert vectors.prebuilt and vectors.kind == "hnsw"  # "auto" would have built a flat index for 40 items
        assert isinstance(vectors.users._table, np.memmap)
        for user in shop["users"][:12]:
            a, _ = svc.recommend_user(svc.require(), user, 5, True, None)
            b, _ = exact.recommend_user(exact.require(), user, 5, True, None)
            assert a.item_ids == b.item_ids
        assert svc.similar(svc.require(), "i3", 5, None).item_ids == exact.similar(exact.require(), "i3", 5, None).item_ids
        # a mapped table is never written: an update copies it first
        vectors.users.add_or_update(np.array([41]), np.ones((1, vectors.users.dim), np.float32))
        assert not isinstance(vectors.users._table, np.memmap) and len(vectors.users) == 41
    finally:
        svc.store.close()
        exact.store.close()


def test_an_index_built_for_other_weights_is_not_served(shop, run, tmp_path, caplog):
    assert CliRunner().invoke(app, ["index", "--run", str(run), "--kind", "hnsw"]).exit_code == 0
    prebuilt = run / "index"
    retrained = tmp_path / "retrained"
    train_run(make_model("sasrec", {**SASREC, "train.seed": "7"}), shop["root"] / "data", DataConfig(), retrained,
              fit_on="all")
    shutil.copytree(prebuilt, retrained / "index")  # left over from the earlier weights
    with caplog.at_level("WARNING", logger="shopformer.serve"):
        svc = served_with(shop, retrained)
    try:
        assert not svc.require().vectors.prebuilt and svc.require().vectors.kind == "flat"
        assert "built for other weights" in caplog.text
    finally:
        svc.store.close()


def test_index_refuses_a_model_without_vectors(shop):
    out = CliRunner().invoke(app, ["index", "--run", str(shop["root"] / "itemknn")])
    assert out.exit_code == 2 and "without a vector index" in out.output
