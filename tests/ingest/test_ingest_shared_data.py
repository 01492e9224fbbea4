"""Counts stated in ../shared/data/*/README.md, read through the adapters.

Skipped (with a reason) when ../shared/data is absent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from shopformer.ingest import read


def test_beauty_sequences(shared_data: Path) -> None:
    ev, _, rep = read(shared_data / "amazon-beauty" / "Beauty.txt.gz", "sequence")
    assert rep.rows_read == rep.rows_accepted == 198_502
    assert ev["user_id"].n_unique() == 22_363
    assert ev["item_id"].n_unique() == 12_101
    assert ev["position"].to_list()[:5] == [0, 1, 2, 3, 4]
    assert ev.select("user_id", "item_id").head(5).rows() == [
        ("1", "1"), ("1", "2"), ("1", "3"), ("1", "4"), ("1", "5"),
    ]


def test_lastfm_and_scientific_sequences(shared_data: Path) -> None:
    ev, _, _ = read(shared_data / "lastfm" / "LastFM.txt.gz", "sequence")
    assert (ev.height, ev["user_id"].n_unique(), ev["item_id"].n_unique()) == (52_551, 1_090, 3_646)
    ev, _, _ = read(shared_data / "amazon-scientific" / "Scientific.txt.gz", "sequence")
    assert (ev.height, ev["user_id"].n_unique(), ev["item_id"].n_unique()) == (59_427, 8_442, 4_385)


def test_ml1m_sequences(shared_data: Path) -> None:
    ev, _, rep = read(shared_data / "ml-1m" / "ml-1m_sequences.txt.gz", "sequence")
    assert rep.rows_accepted == 999_611 and rep.rejected == {}
    assert ev["user_id"].n_unique() == 6_040 and ev["item_id"].n_unique() == 3_416
    assert ev.select("user_id", "item_id").head(2).rows() == [("1", "3186"), ("1", "1022")]


def test_catalog_files(shared_data: Path) -> None:
    _, p, _ = read(shared_data / "ml-1m" / "movies.dat.gz", "movielens-movies")
    assert p.height == 3_883
    assert p.row(0, named=True)["categories"] == ["Animation", "Children's", "Comedy"]
    assert p.filter(pl.col("title").str.contains("\ufffd")).height == 0
    _, p, _ = read(shared_data / "ml-1m" / "movies_extrainfos.dat.gz", "movielens-plots")
    assert p.height == 3_881 and p.row(0, named=True)["title"] == "Toy Story (1995)"
    assert p["description"].null_count() < 100  # MeLU has a plot for nearly every movie
    _, p, _ = read(shared_data / "amazon-scientific" / "items.tsv.gz", "items-tsv")
    assert p.height == 4_385 and p["title"].null_count() == 0
    _, p, _ = read(shared_data / "amazon-beauty" / "Beauty_item2attributes.json.gz", "item2attributes")
    assert p.height == 12_101
    assert p["tags"].explode().n_unique() == 637
    _, p, _ = read(shared_data / "ml-100k" / "ml-100k.item.gz", "recbole")
    assert p.height == 1_682 and p.row(0, named=True)["title"] == "Toy Story"


def test_ml100k_ratings(shared_data: Path) -> None:
    ev, _, rep = read(shared_data / "ml-100k" / "ml-100k.inter.gz", "recbole")
    assert rep.rows_accepted == 100_000 and rep.rejected == {}
    assert ev["user_id"].n_unique() == 943 and ev["item_id"].n_unique() == 1_682
    assert set(ev["value"].unique().to_list()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ev["event_type"].unique().to_list() == ["rate"]
    assert ev["timestamp"].min().date() == datetime(1997, 9, 20, tzinfo=UTC).date()
    assert ev["timestamp"].max().date() == datetime(1998, 4, 22, tzinfo=UTC).date()


def test_online_retail_full(shared_data: Path) -> None:
    ev, prods, rep = read(shared_data / "online-retail" / "online_retail.csv.gz", "online-retail")
    assert rep.rows_read == 541_909
    assert rep.rejected["missing_user_id"] == 135_080
    assert rep.rows_read == rep.rows_accepted + rep.rows_rejected
    assert ev["user_id"].n_unique() == 4_372
    assert ev["user_id"].str.contains(r"\.").sum() == 0
    assert ev["timestamp"].null_count() == 0
    # first and last invoice lines: 2010-12-01 08:26 (GMT) and 2011-12-09 12:50 (GMT)
    assert ev["timestamp"].min() == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    assert ev["timestamp"].max() == datetime(2011, 12, 9, 12, 50, tzinfo=UTC)
    cancels = ev.filter(pl.col("event_type") == "cancel")
    assert cancels.height > 0 and cancels["session_id"].str.starts_with("C").all()
    assert (cancels["value"] > 0).all()
    assert prods.height == 4_070 and (prods["currency"] == "GBP").all()
    lamp = prods.filter(pl.col("item_id") == "85123A").row(0, named=True)
    assert lamp["title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert lamp["price"] == 2.95


def test_online_retail_ii_slice(shared_data: Path, tmp_path: Path) -> None:
    import gzip

    src = shared_data / "online-retail-ii" / "online_retail_II_2009-2010.csv.gz"
    with gzip.open(src, "rb") as f:
        head = b"".join(f.readline() for _ in range(2_001))
    part = tmp_path / "ii_head.csv"
    part.write_bytes(head)
    ev, prods, rep = read(part, "online-retail")
    assert rep.rows_read == 2_000
    assert rep.rows_read == rep.rows_accepted + rep.rows_rejected
    assert ev["timestamp"].min() == datetime(2009, 12, 1, 7, 45, tzinfo=UTC)
    assert prods.height > 0
