"""CLI commands that name a customer map the raw id with SHOPFORMER_PSEUDONYM_KEY when
the store or the run's data holds pseudonyms, and refuse clearly without the key."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shopformer.artifact import make_model
from shopformer.cli import app
from shopformer.dataset import DataConfig
from shopformer.experiment import train_run
from shopformer.ingest import ingest
from shopformer.privacy.pseudonym import ENV_VAR, PseudonymConfig, Pseudonymizer
from shopformer.store import EventStore, StoreConfig, import_folder

KEY = "cli pseudonym key, 32 bytes long"
P = Pseudonymizer(PseudonymConfig(KEY.encode()))
SEQUENCES = "annRaw41 a b c\nbobRaw52 a b d\ncyRaw63 b c d\ndeeRaw74 e f g\n"
runner = CliRunner()


def cli(*args, key: str | None = KEY):
    return runner.invoke(app, [str(a) for a in args], env={ENV_VAR: key or ""})


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("pcli")
    (root / "seq.txt").write_text(SEQUENCES)
    ingest(root / "seq.txt", "sequence", root / "data", pseudonyms=P)
    train_run(make_model("itemknn", {"shrink": "0"}), root / "data", DataConfig(), root / "run", fit_on="all")
    return root


def test_export_and_forget_by_raw_id(shop, tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop / "data")

    result = cli("export-user", "annRaw41", "--store", url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["user_id"] == P.user("annRaw41") and len(data["events"]) == 3

    result = cli("export-user", "annRaw41", "--store", url, key=None)
    assert result.exit_code != 0 and "holds pseudonymous customer ids" in result.output
    result = cli("forget", "annRaw41", "--store", url, key="another key of 32 bytes, really!")
    assert result.exit_code != 0 and "another key" in result.output

    result = cli("forget", "annRaw41", "--store", url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["removed"] == {"events": 3, "impressions": 0}
    with EventStore(StoreConfig(url)) as store:
        assert store.user_events(P.user("annRaw41")).height == 0 and store.count_events() == 9


def test_explain_maps_the_raw_id_of_a_pseudonymous_run(shop):
    result = cli("explain", "bobRaw52", "--run", shop / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["user_id"] == P.user("bobRaw52")
    result = cli("explain", "bobRaw52", "--run", shop / "run", "--json", key=None)
    assert result.exit_code != 0 and ENV_VAR in result.output
