"""`ingest --pseudonymize`: no raw customer id reaches the data folder, its report or a
run trained from it; folders never mix raw ids with pseudonyms, or two keys."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from shopformer.artifact import make_model
from shopformer.cli import app
from shopformer.dataset import DataConfig
from shopformer.experiment import train_run
from shopformer.ingest import IngestError, ingest, load_folder
from shopformer.privacy.pseudonym import ENV_VAR, PseudonymConfig, Pseudonymizer

KEY = "0123456789abcdef0123456789abcdef"
P = Pseudonymizer(PseudonymConfig(KEY.encode()))
OTHER = Pseudonymizer(PseudonymConfig(b"another key of 32 bytes, really!"))

EVENTS = b"""\
user_id,item_id,event_type,timestamp,session_id
rawAnn7q,i1,view,2024-01-01 10:00:00,sessRawX1
rawAnn7q,i2,purchase,2024-01-01 10:05:00,sessRawX1
rawBob8w,i1,view,2024-01-02 09:00:00,sessRawX2
rawBob8w,i3,purchase,2024-01-02 09:10:00,sessRawX2
rawCy9z,i2,view,2024-01-03 11:00:00,
rawCy9z,i3,view,2024-01-03 11:01:00,
rawCy9z,i1,purchase,2024-01-03 11:02:00,
rawBob8w,i1,view,2024-01-02 09:00:00,sessRawX2
rawDee5k,i2,view,not-a-time,
raw\xffEve6t,i1,view,2024-01-04 10:00:00,
"""
#: every raw id of the file (the invalid-UTF-8 one by its readable tail)
RAW = ("rawAnn7q", "rawBob8w", "rawCy9z", "rawDee5k", "Eve6t", "sessRawX")
runner = CliRunner()


def leaks(folder: Path) -> dict[str, list[str]]:
    """Raw ids found in any file under ``folder``: in its bytes, and for Parquet files
    (compressed) in their decoded values too."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("latin-1")
        if path.suffix == ".parquet":
            text += pl.read_parquet(path).cast(pl.String).write_csv()
        hits = [r for r in RAW if r in text]
        if hits:
            found[str(path.relative_to(folder))] = hits
    return found


def ingest_cli(tmp_path: Path, data: Path, *extra: str, key: str | None = KEY) -> object:
    src = tmp_path / "events.csv"
    src.write_bytes(EVENTS)
    env = {ENV_VAR: key} if key is not None else {ENV_VAR: ""}
    return runner.invoke(app, ["ingest", str(src), "--data", str(data), *extra], env=env)


def test_no_raw_id_in_the_folder_the_report_or_a_trained_run(tmp_path):
    raw_data = tmp_path / "raw"
    assert ingest_cli(tmp_path, raw_data, key=None).exit_code == 0
    assert set(leaks(raw_data)) >= {"events.parquet", "ingest_report.json"}  # the check sees raw ids

    data = tmp_path / "data"
    result = ingest_cli(tmp_path, data, "--pseudonymize")
    assert result.exit_code == 0, result.output
    assert P.fingerprint in result.output and not [r for r in RAW if r in result.output]
    assert leaks(data) == {}
    events, _ = load_folder(data)
    assert sorted(set(events["user_id"])) == sorted({P.user(u) for u in ("rawAnn7q", "rawBob8w", "rawCy9z")})
    assert set(events["session_id"].drop_nulls()) == {P.session("sessRawX1"), P.session("sessRawX2")}
    assert json.loads((data / "pseudonyms.json").read_text())["key_fingerprint"] == P.fingerprint

    report = json.loads((data / "ingest_report.json").read_text())
    assert report["pseudonym_key"] == P.fingerprint and report["rows_accepted"] == 7
    assert report["rejected"] == {"invalid_utf8": 1, "bad_timestamp": 1, "duplicate": 1}
    dup = report["examples"]["duplicate"][0]["value"]
    assert dup.startswith(f"user_id={P.user('rawBob8w')} ")  # the example names the pseudonym
    assert report["examples"]["invalid_utf8"][0]["field"] == "user_id"
    assert P.is_pseudonym(report["examples"]["invalid_utf8"][0]["value"])
    assert "customer ids: pseudonymous" in (data / "ingest_report.md").read_text()

    for name in ("popular", "ease"):
        run = tmp_path / f"run-{name}"
        train_run(make_model(name, {}), data, DataConfig(), run, fit_on="all")
        assert leaks(run) == {}, name
        assert P.user("rawAnn7q") in json.loads((run / "users.json").read_text())


def test_the_key_is_required_and_checked(tmp_path):
    result = ingest_cli(tmp_path, tmp_path / "data", "--pseudonymize", key=None)
    assert result.exit_code != 0 and f"{ENV_VAR} is not set" in result.output
    result = ingest_cli(tmp_path, tmp_path / "data", "--pseudonymize", key="short")
    assert result.exit_code != 0 and f"{ENV_VAR} is 5 bytes" in result.output
    assert not (tmp_path / "data").exists()


def test_folders_never_mix_raw_ids_and_pseudonyms(tmp_path):
    (tmp_path / "events.csv").write_bytes(EVENTS)
    src, data, raw = tmp_path / "events.csv", tmp_path / "data", tmp_path / "raw"
    ingest(src, "csv", data, pseudonyms=P)
    again = ingest(src, "csv", data, pseudonyms=P)  # duplicates are found against stored pseudonyms
    assert again.rows_accepted == 0 and again.rejected["duplicate"] == 8
    with pytest.raises(IngestError, match="holds pseudonymous customer ids"):
        ingest(src, "csv", data)
    with pytest.raises(IngestError, match="another key"):
        ingest(src, "csv", data, pseudonyms=OTHER)
    ingest(src, "csv", raw)
    with pytest.raises(IngestError, match="raw customer ids"):
        ingest(src, "csv", raw, pseudonyms=P)
    assert load_folder(data)[0].height == 7 and not (raw / "pseudonyms.json").exists()


def test_already_pseudonymous_ids_are_kept_and_other_keys_refused(tmp_path):
    mine, theirs = P.user("rawAnn7q"), OTHER.user("rawAnn7q")
    (tmp_path / "a.csv").write_text(f"user_id,item_id\n{mine},i1\nrawAnn7q,i2\n")
    report = ingest(tmp_path / "a.csv", "csv", tmp_path / "data", pseudonyms=P)
    assert report.rows_accepted == 2 and set(load_folder(tmp_path / "data")[0]["user_id"]) == {mine}
    (tmp_path / "b.csv").write_text(f"user_id,item_id\nrawBob8w,i1\n{theirs},i2\n")
    with pytest.raises(IngestError, match=r"b\.csv, line 3: field 'user_id'.*not made with this key"):
        ingest(tmp_path / "b.csv", "csv", tmp_path / "other", pseudonyms=P)


def test_strict_mode_errors_name_the_pseudonym(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"user_id,item_id\nrawAnn7q,i1\nraw\xffEve6t,i2\n")
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "a.csv", "csv", tmp_path / "data", strict=True, pseudonyms=P)
    assert "line 3" in str(err.value) and "invalid_utf8" in str(err.value) and "Eve6t" not in str(err.value)
