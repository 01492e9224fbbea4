"""The data-folder API: append, duplicates against stored rows, atomic writes, reports."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from shopformer.ingest import IngestError, IngestReport, ingest, ingest_to_folder, load_folder
from shopformer.types import EVENT_SCHEMA, PRODUCT_SCHEMA

FILES = ("events.parquet", "products.parquet", "ingest_report.json", "ingest_report.md")


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_ingest_writes_folder_and_appends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = _csv(tmp_path / "a.csv", "user_id,item_id,timestamp\nu1,x,2024-01-01\nu2,y,2024-01-02\n")
    rep = ingest(a, None, data)
    assert rep.rows_accepted == 2
    for f in FILES:
        assert (data / f).exists(), f
    ev, prods = load_folder(data)
    assert ev.schema == pl.Schema(EVENT_SCHEMA) and prods.schema == pl.Schema(PRODUCT_SCHEMA)
    assert ev["position"].to_list() == [0, 1]

    # Same file again: everything is a duplicate of stored rows; nothing changes.
    rep2 = ingest(a, None, data)
    assert rep2.rejected == {"duplicate": 2} and rep2.rows_accepted == 0
    assert load_folder(data)[0].height == 2

    # New rows (one repeated) are appended; positions continue.
    b = _csv(tmp_path / "b.csv", "user_id,item_id,timestamp\nu2,y,2024-01-02\nu3,z,2024-01-03\n")
    rep3 = ingest(b, "csv", data)
    assert rep3.rejected == {"duplicate": 1}
    ev, _ = load_folder(data)
    assert ev.select("user_id", "position").rows() == [("u1", 0), ("u2", 1), ("u3", 2)]
    saved = json.loads((data / "ingest_report.json").read_text())
    assert saved["rejected"] == {"duplicate": 1} and saved["source"] == str(b)
    assert IngestReport.from_dict(saved).rejected == rep3.rejected


def test_sequences_append_without_dedup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = _csv(tmp_path / "s.txt", "1 a b\n2 c\n")
    ingest(s, "sequence", data)
    rep = ingest(s, "sequence", data, event_type="view")
    assert rep.rejected == {}
    ev, _ = load_folder(data)
    assert ev["position"].to_list() == list(range(6))
    assert ev["event_type"].to_list() == ["purchase"] * 3 + ["view"] * 3


def test_failed_ingest_leaves_old_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = _csv(tmp_path / "a.csv", "user_id,item_id\nu1,x\n")
    ingest(a, None, data)
    before = {f: (data / f).read_bytes() for f in FILES}
    bad = _csv(tmp_path / "bad.csv", "user_id,item_id,ts\nu1,x,never\n")
    with pytest.raises(IngestError, match="line 2"):
        ingest(bad, None, data, mapping={"timestamp": "ts"}, strict=True)
    with pytest.raises(IngestError, match="'CustomerID'"):
        ingest(a, None, data, mapping={"user_id": "CustomerID"})
    assert {f: (data / f).read_bytes() for f in FILES} == before
    assert sorted(p.name for p in data.iterdir()) == sorted(FILES)  # no temp files left


def test_catalog_and_unknown_items(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cat = _csv(tmp_path / "cat.csv", "item_id,title,price\nx,Lamp,10\ny,Mug,3.5\n")
    ev = _csv(tmp_path / "ev.csv", "user_id,item_id\nu1,x\nu1,q\nu2,y\n")
    rep = ingest(ev, None, data, catalog=cat)
    assert rep.rejected == {"unknown_item": 1}
    assert rep.examples["unknown_item"] == [(3, "item_id", "q")]
    assert rep.catalog is not None and rep.catalog.rows_accepted == 2
    assert "unknown_item" in (data / "ingest_report.md").read_text()

    # Catalog update: changed rows replace stored ones, identical rows are duplicates.
    cat2 = _csv(tmp_path / "cat2.csv", "item_id,title,price\nx,Lamp,12\ny,Mug,3.5\nz,Pen,1\n")
    rep2 = ingest(None, None, data, catalog=cat2)
    assert rep2.kind == "products"
    assert rep2.rejected == {"duplicate": 1} and rep2.warnings == {"updated": 1}
    _, prods = load_folder(data)
    assert prods.select("item_id", "price").sort("item_id").rows() == [
        ("x", 12.0), ("y", 3.5), ("z", 1.0),
    ]
    # Events against the stored catalog (given again as a catalog) find "z" now.
    ev2 = _csv(tmp_path / "ev2.csv", "user_id,item_id\nu3,z\n")
    assert ingest_to_folder(data, ev2, catalog=cat2).rows_accepted == 1


def test_catalog_only_format_as_source(tmp_path: Path) -> None:
    data = tmp_path / "data"
    p = tmp_path / "movies.dat"
    p.write_bytes("1::Toy Story (1995)::Animation\n".encode("iso-8859-1"))
    rep = ingest(p, "movielens-movies", data)
    assert rep.kind == "products" and rep.rows_accepted == 1
    ev, prods = load_folder(data)
    assert ev.height == 0 and prods["title"].to_list() == ["Toy Story (1995)"]


def test_nothing_to_ingest(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nothing to ingest"):
        ingest(None, None, tmp_path)


def test_report_renderers() -> None:
    rep = IngestReport(
        source="x.csv", format="csv", rows_read=3, rows_accepted=1,
        rejected={"bad_timestamp": 1, "missing_user_id": 1},
        examples={"bad_timestamp": [(3, "ts", "a|b")], "missing_user_id": [(4, "user", None)]},
        warnings={"repaired_utf8": 1},
    )
    md = rep.to_markdown()
    assert "| bad_timestamp | 1 | 3: ts = 'a\\|b' |" in md
    assert "| repaired_utf8 | 1 |" in md
    assert IngestReport.from_dict(json.loads(rep.to_json())) == rep
    console = Console(record=True, width=120)
    console.print(rep.rich_table())
    text = console.export_text()
    assert "missing_user_id" in text and "3 read, 1 accepted, 2 rejected" in text


def test_online_retail_reingest_is_idempotent(tmp_path: Path) -> None:
    from .test_ingest_adapters import RETAIL_I

    data = tmp_path / "data"
    p = _csv(tmp_path / "online_retail.csv", RETAIL_I)
    first = ingest(p, "online-retail", data)
    ev1, pr1 = load_folder(data)
    again = ingest(p, "online-retail", data)
    ev2, pr2 = load_folder(data)
    assert again.rows_accepted == 0
    assert again.rejected["duplicate"] == first.rows_accepted + first.rejected["duplicate"]
    assert again.catalog is not None and again.catalog.rejected == {"duplicate": 2}
    assert ev2.equals(ev1) and pr2.equals(pr1)
