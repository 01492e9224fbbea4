"""A run trained with time context, served: the request's time reaches the model, so
the same customer is answered with December's products in December and with the
others in July (the season shop of tests/models/test_time_context.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

pytest.importorskip("fastapi")

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings  # noqa: E402
from shopformer.serve.recommender import RecommendationService  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

SETTINGS = {"arch.time_context": "true", "arch.max_len": "8", "arch.d_model": "32", "arch.n_layers": "1",
            "arch.n_heads": "1", "arch.dropout": "0", "train.epochs": "10", "train.batch_size": "64",
            "train.lr": "0.01", "train.warmup_steps": "10", "train.threads": "1"}


def at(y: int, m: int, d: int) -> float:
    return datetime(y, m, d, 12, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("season")
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,event_type,timestamp"]
    for u in range(800):  # December: d1..d5; other months: o1..o5; seasons independent of history
        t = at(2005, 1, 1) + rng.uniform(0, 365 * 86400)
        for _ in range(5):
            t += rng.uniform(1, 366) * 86400
            when = datetime.fromtimestamp(t, timezone.utc)
            item = f"{'d' if when.month == 12 else 'o'}{int(rng.integers(1, 6))}"
            lines.append(f"u{u},{item},purchase,{when.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    (root / "events.csv").write_text("\n".join(lines) + "\n")
    data = root / "data"
    ingest(root / "events.csv", "csv", data)
    train_run(make_model("sasrec", SETTINGS), data, DataConfig(event_types=("purchase",)), root / "run", fit_on="all")
    url = f"sqlite:///{root / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, data)
    svc = RecommendationService(ServeSettings(store_url=url, index="exact", cache_ttl_s=0),
                                EventStore(StoreConfig(url)))
    svc.reload(root / "run")
    yield svc
    svc.store.close()


def test_the_request_time_reaches_the_model(served, monkeypatch):
    import shopformer.models.sequential as sequential

    answers = {}
    for month, when in (("december", at(2013, 12, 15)), ("july", at(2013, 7, 15))):
        monkeypatch.setattr(sequential, "_now", lambda when=when: when)
        ranked, _ = served.recommend_user(served.require(), "u1", 5, False, None)
        answers[month] = ranked.item_ids
    assert sum(i.startswith("d") for i in answers["december"]) >= 4, answers
    assert sum(i.startswith("o") for i in answers["july"]) >= 4, answers
