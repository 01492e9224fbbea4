"""Adapters for public formats, on small hand-written files."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from shopformer.ingest import (
    IngestError,
    parse_timestamps,
    read,
    read_item2attributes,
    read_items_tsv,
    read_movielens_movies,
    read_movielens_plots,
    read_online_retail,
    read_recbole,
    read_sequences,
)


def _gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def test_sequences_one_rule_for_both_layouts(tmp_path: Path) -> None:
    p = _gz(tmp_path / "s.txt.gz", b"1 a b c\n2 007\n\n3\n1  a\t b\r\n")
    ev, _, rep = read_sequences(p, event_type="view", position_start=10)
    assert ev.select("user_id", "item_id").rows() == [
        ("1", "a"), ("1", "b"), ("1", "c"), ("2", "007"), ("1", "a"), ("1", "b"),
    ]
    assert ev["position"].to_list() == list(range(10, 16))
    assert ev["event_type"].unique().to_list() == ["view"]
    assert ev["timestamp"].null_count() == 6
    assert rep.rows_read == 6 and rep.rejected == {}  # repeats are not duplicates
    assert rep.warnings == {"blank_lines": 1, "lines_without_items": 1}
    # ml-1m layout: one "user item" pair per line, users spanning lines
    q = tmp_path / "pairs.txt"
    q.write_text("1 3186\n1 1022\n2 5\n")
    ev2, _, _ = read(q, "sequence")
    assert ev2.select("user_id", "item_id", "event_type", "position").rows() == [
        ("1", "3186", "purchase", 0), ("1", "1022", "purchase", 1), ("2", "5", "purchase", 2),
    ]


def test_sequences_invalid_utf8_id(tmp_path: Path) -> None:
    p = tmp_path / "s.txt"
    p.write_bytes(b"1 a b\n2 \xff c\n")
    ev, _, rep = read_sequences(p)
    assert rep.rejected == {"invalid_utf8": 1}
    assert rep.examples["invalid_utf8"] == [(2, "item_id", "\ufffd")]
    assert ev["item_id"].to_list() == ["a", "b", "c"]
    assert ev["position"].to_list() == [0, 1, 2]


RETAIL_I = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"  # 2
    "536366,85123A,WHITE HEART,2,2011-06-01 08:26:00,2.95,17850,United Kingdom\n"  # 3 BST
    "C536379,85123A,WHITE HEART,-4,2011-06-02 09:00:00,2.95,12583,France\n"  # 4 cancel
    "536380,85123A,heart white,1,2011-06-03 10:00:00,2.95,,United Kingdom\n"  # 5 no customer
    "536381,22000,,-5,2011-06-04 10:00:00,0,13000,United Kingdom\n"  # 6 negative qty
    "536382,22000,MUG,3,2011-06-05 10:00:00,1.25,13000,Germany\n"  # 7
    "536382,22000,MUG,3,2011-06-05 10:00:00,1.25,13000,Germany\n"  # 8 duplicate
)


def test_online_retail_events(tmp_path: Path) -> None:
    p = _gz(tmp_path / "online_retail.csv.gz", RETAIL_I.encode())
    ev, prods, rep = read_online_retail(p)
    assert rep.rows_read == 7
    assert rep.rejected == {"missing_user_id": 1, "negative_quantity": 1, "duplicate": 1}
    assert rep.examples["missing_user_id"] == [(5, "CustomerID", None)]
    assert rep.examples["negative_quantity"] == [(6, "Quantity", "-5")]
    assert [x[0] for x in rep.examples["duplicate"]] == [8]
    assert ev.select("user_id", "item_id", "event_type", "value", "session_id").rows() == [
        ("17850", "85123A", "purchase", 6.0, "536365"),
        ("17850", "85123A", "purchase", 2.0, "536366"),
        ("12583", "85123A", "cancel", 4.0, "C536379"),
        ("13000", "22000", "purchase", 3.0, "536382"),
    ]
    assert ev["timestamp"].to_list() == [
        datetime(2010, 12, 1, 8, 26, tzinfo=UTC),  # GMT
        datetime(2011, 6, 1, 7, 26, tzinfo=UTC),  # BST -> UTC
        datetime(2011, 6, 2, 8, 0, tzinfo=UTC),
        datetime(2011, 6, 5, 9, 0, tzinfo=UTC),
    ]
    assert json.loads(ev["context"][2]) == {"country": "France", "unit_price": 2.95}
    assert ev["position"].to_list() == [0, 1, 2, 3]


def test_online_retail_catalog(tmp_path: Path) -> None:
    p = _gz(tmp_path / "online_retail.csv.gz", RETAIL_I.encode())
    _, prods, rep = read_online_retail(p)
    assert rep.catalog is not None and rep.catalog.rows_accepted == 2
    assert prods.select("item_id", "title", "price", "currency").rows() == [
        # title: most frequent description; price: mode over purchases (2.95 x2 vs 2.55 x1;
        # the cancel line does not count)
        ("85123A", "WHITE HEART", 2.95, "GBP"),
        ("22000", "MUG", 1.25, "GBP"),
    ]


def test_online_retail_ii_header(tmp_path: Path) -> None:
    p = tmp_path / "ii.csv"
    p.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "489434,85048,LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom\n"
        "C489449,22087,PAPER,-12,2009-12-01 10:33:00,0.85,16321.0,Australia\n"
    )
    ev, prods, rep = read(p, "online-retail")
    assert rep.rejected == {}
    assert ev.select("user_id", "event_type", "value").rows() == [
        ("13085", "purchase", 12.0), ("16321", "cancel", 12.0),
    ]
    assert prods.select("item_id", "price").rows() == [("85048", 6.95), ("22087", None)]


def test_online_retail_wrong_file(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(IngestError, match="'InvoiceNo' or 'Invoice'.*columns found: 'a', 'b'"):
        read_online_retail(p)


def test_recbole_inter_and_item(tmp_path: Path) -> None:
    inter = _gz(
        tmp_path / "ml.inter.gz",
        b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        b"196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n",
    )
    ev, _, rep = read_recbole(inter)
    assert rep.rejected == {}
    assert ev.select("user_id", "item_id", "event_type", "value", "timestamp").rows() == [
        ("196", "242", "rate", 3.0, datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)),
        ("186", "302", "rate", 3.5, datetime(1998, 4, 4, 19, 22, 22, tzinfo=UTC)),
    ]
    item = tmp_path / "ml.item"
    item.write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "2\tGoldenEye\t1995\t\n"
    )
    _, prods, rep = read(item, "recbole")
    assert rep.kind == "products"
    assert prods.select("item_id", "title", "categories", "attributes").rows() == [
        ("1", "Toy Story", ["Animation", "Children's", "Comedy"], '{"release_year":"1995"}'),
        ("2", "GoldenEye", None, '{"release_year":"1995"}'),
    ]
    with pytest.raises(IngestError, match="not supported"):
        read_recbole(tmp_path / "ml.user")


def test_item2attributes(tmp_path: Path) -> None:
    p = _gz(tmp_path / "X_item2attributes.json.gz", b'{"4": [1, 2, 3], "83": [4, 4, 5], "9": []}')
    _, prods, rep = read_item2attributes(p)
    assert rep.rows_read == 3 and rep.rejected == {}
    assert prods.select("item_id", "tags", "attributes").rows() == [
        ("4", ["1", "2", "3"], '{"attribute_ids":[1,2,3]}'),
        ("83", ["4", "5"], '{"attribute_ids":[4,4,5]}'),
        ("9", [], '{"attribute_ids":[]}'),
    ]


def test_items_tsv(tmp_path: Path) -> None:
    p = tmp_path / "items.tsv"
    p.write_text('item_id\tasin\ttext\n0\tB00TNNWMXI\teSUN 1.75mm "PLA" Spool. eSUN. \n')
    _, prods, _ = read_items_tsv(p)
    assert prods.select("item_id", "title", "attributes").rows() == [
        ("0", 'eSUN 1.75mm "PLA" Spool. eSUN.', '{"asin":"B00TNNWMXI"}')
    ]


def test_movielens_movies_latin1(tmp_path: Path) -> None:
    p = _gz(
        tmp_path / "movies.dat.gz",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "73::Misérables, Les (1995)::Drama|War\n".encode("iso-8859-1"),
    )
    _, prods, rep = read_movielens_movies(p)
    assert rep.warnings == {}
    assert prods.select("item_id", "title", "categories", "attributes").rows() == [
        ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"], '{"year":1995}'),
        ("73", "Misérables, Les (1995)", ["Drama", "War"], '{"year":1995}'),
    ]


def test_movielens_plots(tmp_path: Path) -> None:
    p = _gz(
        tmp_path / "movies_extrainfos.dat.gz",
        "1::Toy Story::1995::G::22 Nov 1995::Animation, Comedy::John Lasseter::John Lasseter (original story by), "
        "Joss Whedon (screenplay by)::Tom Hanks, Tim Allen::A boy's toys come to life.::https://x/1.jpg\r\n"
        "9::Nameless::N/A::N/A::N/A::Drama::N/A::N/A::N/A::N/A::N/A\r\n".encode(),
    )
    _, prods, rep = read_movielens_plots(p)
    assert rep.warnings == {}
    assert prods.select("item_id", "title", "brand", "categories", "tags", "description", "image_uri",
                        "attributes").rows() == [
        ("1", "Toy Story (1995)", "John Lasseter", ["Animation", "Comedy"], ["Tom Hanks", "Tim Allen"],
         "A boy's toys come to life.", "https://x/1.jpg",
         '{"year":1995,"rated":"G","writers":["John Lasseter","Joss Whedon"]}'),
        ("9", "Nameless", None, ["Drama"], None, None, None, '{"year":null,"rated":null,"writers":null}'),
    ]


def test_parse_timestamps_auto() -> None:
    s = pl.Series(
        [
            "2024-01-02", "2024-01-02 03:04", "2024-01-02T03:04:05.5", "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05+01:00", "1/2/2024 3:04", "1704164645", "1704164645000",
            "garbage", "", None,
        ]
    )
    out = parse_timestamps(s, "auto", "UTC").to_list()
    assert out[:8] == [
        datetime(2024, 1, 2, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, 2, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    ]
    assert out[8:] == [None, None, None]
    # a local time inside the spring-forward gap does not exist -> unparseable
    gap = parse_timestamps(pl.Series(["2011-03-27 01:30:00"]), "auto", "Europe/London")
    assert gap.to_list() == [None]
