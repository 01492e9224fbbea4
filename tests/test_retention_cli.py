"""`shopformer retention` on a SQLite store and on a data folder, and training on a purged
folder reading only what is kept."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
from typer.testing import CliRunner

from shopformer.cli import app
from shopformer.ingest.api import ingest
from shopformer.privacy.retention import FOLDER_REPORT, purge_folder
from shopformer.store import EventStore, RetentionConfig, StoreConfig
from shopformer.store.access import audit_entries

runner = CliRunner()
NOW = datetime.now(timezone.utc)


def invoke(*args, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def rows() -> list[dict]:
    out = []
    for d, t in ((1, "view"), (40, "view"), (400, "view"), (40, "search"), (400, "purchase"), (800, "purchase")):
        out.append({"event_id": f"{t}-{d}", "user_id": f"u{d}", "event_type": t, "timestamp": NOW - timedelta(days=d),
                    "item_id": None if t == "search" else "i1", "query": "old boots" if t == "search" else None})
    return out


def test_set_show_dry_run_and_purge_a_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with EventStore(StoreConfig(url)) as store:
        store.add_events(rows())

    dry = json.loads(invoke("retention", "--store", url, "--days", "365", "--type", "purchase=730",
                            "--type", "search=30", "--dry-run", "--json"))
    assert dry["store"]["event_types"] == {"purchase": 1, "search": 1, "view": 1} and dry["store"]["dry_run"]
    with EventStore(StoreConfig(url)) as store:  # a dry run changes nothing, not even the policy
        assert store.count_events() == 6 and store.retention_policy() is None and store.purges() == []

    done = json.loads(invoke("retention", "--store", url, "--days", "365", "--type", "purchase=730",
                             "--type", "search=30", "--json"))
    assert done["store"]["event_types"] == dry["store"]["event_types"] and done["store"]["trigger"] == "cli"
    assert done["policy"] == {"days": 365.0, "types": {"purchase": 730.0, "search": 30.0}}
    with EventStore(StoreConfig(url)) as store:
        assert set(store.events()["event_id"]) == {"view-1", "view-40", "purchase-400"}
        assert store.retention_policy() == RetentionConfig(days=365, types={"purchase": 730, "search": 30})

    again = invoke("retention", "--store", url)  # the stored policy: nothing left to purge
    assert "deleted 0 events" in again and "every type: 365 days" in again
    shown = invoke("retention", "--store", url, "--show")
    assert "purge 1 " in shown and "purge 2 " in shown and "cli done: 3" in shown

    invoke("retention", "--store", url, "--clear")
    with EventStore(StoreConfig(url)) as store:
        assert store.retention_policy() is None and store.count_events() == 3
        # the policy changes and the purges are in the audit log; dry runs and --show are not
        log = audit_entries(store)
    assert [(e.action, e.detail.get("deleted")) for e in log] == [
        ("set_retention_policy", None), ("retention_purge", 3), ("retention_purge", 0), ("set_retention_policy", None)]
    assert log[1].target == "purge:1" and all(e.actor.startswith("cli") for e in log)
    assert log[0].detail["policy"]["days"] == 365.0 and log[3].detail["policy"] is None
    assert "no retention policy in the store" in invoke("retention", "--store", url, code=2)


def test_bad_values_name_the_option(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    for args, words in ((["--days", "0"], "--days: retention days must be a number of days > 0"),
                        (["--days", "ninety"], "--days: retention days must be a number of days"),
                        (["--type", "purchse=3"], "--type: retention types: unknown event type 'purchse'"),
                        (["--type", "view:3"], "--type: 'view:3' must look like TYPE=DAYS"),
                        (["--type", "view=-1"], "--type: retention days of 'view'")):
        out = invoke("retention", "--store", url, *args, code=2)
        assert words in " ".join(out.split()), out
    assert "give --store URL and/or --data DIR" in invoke("retention", "--days", "3", code=2)


def test_purge_a_data_folder_then_train_reads_only_what_is_kept(tmp_path):
    data = tmp_path / "data"
    src = tmp_path / "events.csv"
    lines = ["user_id,item_id,event_type,timestamp"]
    for u in range(6):  # recent purchases of a, b, c; old ones of z
        for d, item in ((400, "z"), (3, "a"), (2, "b"), (1, "c")):
            lines.append(f"u{u},{item},purchase,{(NOW - timedelta(days=d)).isoformat()}")
    src.write_text("\n".join(lines) + "\n")
    ingest(src, "csv", data)
    assert pl.read_parquet(data / "events.parquet").height == 24

    dry = json.loads(invoke("retention", "--data", data, "--days", "30", "--dry-run", "--json"))
    assert dry["data"]["event_types"] == {"purchase": 6} and dry["data"]["kept"] == 18
    assert pl.read_parquet(data / "events.parquet").height == 24 and not (data / FOLDER_REPORT).exists()
    out = invoke("retention", "--data", data, "--days", "30")
    assert "deleted 6 events (purchase: 6), 18 kept" in " ".join(out.split())
    kept = pl.read_parquet(data / "events.parquet")
    assert kept.height == 18 and "z" not in set(kept["item_id"])
    assert json.loads((data / FOLDER_REPORT).read_text())["event_types"] == {"purchase": 6}
    assert purge_folder(data, RetentionConfig(days=30)).deleted == 0  # idempotent

    run = tmp_path / "run"
    invoke("train", "--data", data, "--model", "popular", "--full", "--out", run)
    assert "z" not in json.loads((run / "items.json").read_text())  # the model never saw the purged item
