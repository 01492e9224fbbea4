"""Generic readers (CSV / TSV / JSONL / Parquet), mapping, validation and strict mode."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from shopformer.ingest import IngestError, read, read_events, read_products
from shopformer.types import EVENT_SCHEMA, PRODUCT_SCHEMA

# A malformed log: every line's fate is written beside it (line 1 is the header).
MALFORMED_LINES = [
    b"event_id,user,item,type,ts,qty,session,q",
    b",u1,i1,purchase,2024-01-01 10:00:00,2,s1,",  # 2 ok
    b",u1,i2,view,not-a-date,,s1,",  # 3 bad_timestamp
    b",,i3,view,2024-01-01 10:01:00,,s1,",  # 4 missing_user_id
    b",u2,i1,purchase,2024-01-01 11:00:00,-3,s2,",  # 5 negative_quantity
    b",u1,i1,purchase,2024-01-01 10:00:00,2,s1,",  # 6 duplicate of line 2
    b",u\xff2,i4,view,2024-01-02 00:00:00,,s3,",  # 7 invalid_utf8 (id)
    b",u3,i5,teleport,2024-01-02,,,",  # 8 unknown_event_type
    b",u3,,view,2024-01-02,,,",  # 9 missing_item_id
    b",u3,,search,2024-01-02,,,",  # 10 missing_query
    b",u4,i6,view,1704067200,,s4,",  # 11 ok (unix seconds)
    b",u4,i7,Add-To-Cart,2024-01-03T05:00:00Z,1,s4,",  # 12 ok (type normalized)
    b",u5,i8,view,2024-01-03,abc,,",  # 13 bad_value
    b"e1,u6,i9,click,2024-01-04,,,",  # 14 ok
    b"e1,u6,i10,click,2024-01-05,,,",  # 15 duplicate (same event_id)
    b",u7,i11,remove_from_cart,2024-01-05,-1,,",  # 16 ok (negative allowed here)
    b",u8,,search,2024-01-05 12:00,,,caf\xe9 cr\xe8me",  # 17 ok, repaired_utf8 query
    b",u9,i12,view,,,,",  # 18 ok, no timestamp
]
MAPPING = {
    "user_id": "user",
    "item_id": "item",
    "event_type": "type",
    "timestamp": "ts",
    "value": "qty",
    "session_id": "session",
    "query": "q",
}


@pytest.fixture
def malformed_csv(tmp_path: Path) -> Path:
    p = tmp_path / "log.csv"
    p.write_bytes(b"\n".join(MALFORMED_LINES) + b"\n")
    return p


def test_malformed_csv_counts_every_reason_and_keeps_good_rows(malformed_csv: Path) -> None:
    ev, prods, rep = read_events(malformed_csv, mapping=MAPPING)
    assert rep.rejected == {
        "invalid_utf8": 1,
        "missing_user_id": 1,
        "unknown_event_type": 1,
        "missing_query": 1,
        "missing_item_id": 1,
        "bad_timestamp": 1,
        "bad_value": 1,
        "negative_quantity": 1,
        "duplicate": 2,
    }
    assert rep.rows_read == 17
    assert rep.rows_accepted == 7 == ev.height
    assert rep.rows_read == rep.rows_accepted + rep.rows_rejected
    assert rep.warnings == {"repaired_utf8": 1, "missing_timestamp": 1}
    assert ev.schema == pl.Schema(EVENT_SCHEMA)
    assert prods.height == 0
    assert ev["user_id"].to_list() == ["u1", "u4", "u4", "u6", "u7", "u8", "u9"]
    assert ev["item_id"].to_list() == ["i1", "i6", "i7", "i9", "i11", None, "i12"]
    assert ev["event_type"].to_list() == [
        "purchase", "view", "add_to_cart", "click", "remove_from_cart", "search", "view",
    ]
    assert ev["position"].to_list() == list(range(7))
    assert ev["timestamp"].to_list()[:3] == [
        datetime(2024, 1, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 0, tzinfo=UTC),
        datetime(2024, 1, 3, 5, tzinfo=UTC),
    ]
    assert ev["timestamp"][-1] is None
    assert ev["value"].to_list()[:3] == [2.0, None, 1.0]
    assert ev["query"][5] == "caf\ufffd cr\ufffdme"
    # examples: (1-based file line, source column, raw value)
    assert rep.examples["bad_timestamp"] == [(3, "ts", "not-a-date")]
    assert rep.examples["missing_user_id"] == [(4, "user", None)]
    assert rep.examples["negative_quantity"] == [(5, "qty", "-3")]
    assert rep.examples["invalid_utf8"] == [(7, "user", "u\ufffd2")]
    assert rep.examples["unknown_event_type"] == [(8, "type", "teleport")]
    assert rep.examples["bad_value"] == [(13, "qty", "abc")]
    assert [ln for ln, _, _ in rep.examples["duplicate"]] == [6, 15]
    assert rep.examples["duplicate"][1][2] == "event_id=e1"


def test_strict_mode_names_file_line_field_value(malformed_csv: Path) -> None:
    with pytest.raises(IngestError) as e:
        read_events(malformed_csv, mapping=MAPPING, strict=True)
    msg = str(e.value)
    assert "log.csv" in msg and "line 3" in msg
    assert "'ts'" in msg and "not-a-date" in msg and "bad_timestamp" in msg


def test_strict_mode_passes_clean_file(tmp_path: Path) -> None:
    p = tmp_path / "ok.csv"
    p.write_text("user_id,item_id,timestamp\na,x,2024-01-01\nb,y,2024-01-02\n")
    ev, _, rep = read_events(p, strict=True)
    assert rep.rejected == {} and ev.height == 2


def test_missing_mapped_column_is_a_clear_error(malformed_csv: Path) -> None:
    with pytest.raises(IngestError) as e:
        read_events(malformed_csv, mapping={**MAPPING, "user_id": "CustomerID"})
    msg = str(e.value)
    assert "'CustomerID'" in msg and "user_id" in msg
    assert "columns found" in msg and "'user'" in msg and "'qty'" in msg


def test_no_user_column_error_lists_columns(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("who,what\na,b\n")
    with pytest.raises(IngestError, match="no user id column.*'who', 'what'"):
        read_events(p)


def test_default_event_type_and_same_name_columns(tmp_path: Path) -> None:
    p = tmp_path / "x.tsv"
    p.write_text('user_id\titem_id\tvalue\na\t"x\t1\nb\ty\t2.5\n')
    ev, _, rep = read_events(p, event_type="rate")
    assert rep.format == "tsv"
    assert ev["event_type"].to_list() == ["rate", "rate"]
    assert ev["item_id"].to_list() == ['"x', "y"]  # TSV: quotes are data
    assert ev["value"].to_list() == [1.0, 2.5]
    assert ev["timestamp"].null_count() == 2


def test_no_timestamps_means_no_duplicates(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("user_id,item_id\na,x\na,x\na,x\n")
    ev, _, rep = read_events(p)
    assert ev.height == 3 and rep.rejected == {}


def test_timestamp_format_and_timezone_options(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("user_id,item_id,timestamp\na,x,01/06/2011 08:26\nb,y,31/12/2011 23:00\n")
    ev, _, rep = read_events(p, timestamp_format="%d/%m/%Y %H:%M", timezone="Europe/London")
    assert rep.rejected == {}
    assert ev["timestamp"].to_list() == [
        datetime(2011, 6, 1, 7, 26, tzinfo=UTC),  # BST
        datetime(2011, 12, 31, 23, 0, tzinfo=UTC),  # GMT
    ]
    ev2, _, _ = read_events(p, timestamp_format="unix")
    assert ev2.height == 0  # not numbers: every row is a bad timestamp


def test_jsonl_gz_with_mapping_and_catalog(tmp_path: Path) -> None:
    rows = [
        {"uid": 1, "sku": "A", "kind": "view", "at": "2024-05-01T10:00:00+02:00"},
        {"uid": 2, "sku": "B", "kind": "purchase", "at": 1714550400000},
        {"uid": 3, "sku": "ZZ", "kind": "view", "at": "2024-05-02"},
    ]
    p = tmp_path / "ev.jsonl.gz"
    text = "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n"
    p.write_bytes(gzip.compress(text.encode()))
    ev, _, rep = read_events(
        p, mapping={"user_id": "uid", "item_id": "sku", "event_type": "kind", "timestamp": "at"},
        catalog_ids=pl.Series(["A", "B"]),
    )
    assert rep.format == "jsonl"
    assert rep.rejected == {"unknown_item": 1}
    assert rep.examples["unknown_item"] == [(4, "sku", "ZZ")]  # blank line 3 is skipped
    assert ev["user_id"].to_list() == ["1", "2"]
    assert ev["timestamp"].to_list() == [
        datetime(2024, 5, 1, 8, tzinfo=UTC),
        datetime(2024, 5, 1, 8, tzinfo=UTC),  # unix milliseconds
    ]


def test_parquet_typed_columns(tmp_path: Path) -> None:
    p = tmp_path / "ev.parquet"
    pl.DataFrame(
        {
            "CustomerID": [17850.0, None],
            "StockCode": ["85123A", "71053"],
            "InvoiceDate": [datetime(2011, 6, 1, 8, 26), datetime(2011, 6, 1, 9, 0)],
            "Quantity": [6, 2],
        }
    ).write_parquet(p)
    ev, _, rep = read(
        p, mapping={"user_id": "CustomerID", "item_id": "StockCode",
                    "timestamp": "InvoiceDate", "value": "Quantity"},
        event_type="purchase", timezone="Europe/London",
    )
    assert rep.rejected == {"missing_user_id": 1}
    assert rep.examples["missing_user_id"] == [(2, "CustomerID", None)]
    assert ev.row(0, named=True) | {"context": None} == {
        "event_id": None, "user_id": "17850", "item_id": "85123A", "event_type": "purchase",
        "timestamp": datetime(2011, 6, 1, 7, 26, tzinfo=UTC), "position": 0,
        "session_id": None, "query": None, "value": 6.0, "context": None,
    }


def test_products_csv(tmp_path: Path) -> None:
    p = tmp_path / "cat.csv"
    p.write_text(
        "sku,name,price,category,color,in_stock\n"
        "A,Lamp,9.5,Home|Lighting,red,yes\n"
        "B,Mug,-1,Kitchen,blue,no\n"  # bad_price
        ",Nothing,1,,,\n"  # missing_item_id
        "A,Lamp again,9,,,\n"  # duplicate
        "C,Free,,Misc,,\n"
    )
    _, prods, rep = read_products(p, mapping={"item_id": "sku", "title": "name",
                                              "categories": "category", "available": "in_stock"})
    assert rep.kind == "products"
    assert rep.rejected == {"missing_item_id": 1, "bad_price": 1, "duplicate": 1}
    assert rep.examples["bad_price"] == [(3, "price", "-1")]
    assert prods.schema == pl.Schema(PRODUCT_SCHEMA)
    assert prods.rows() == [
        ("A", "Lamp", None, None, ["Home", "Lighting"], 9.5, None, '{"color":"red"}', None,
         None, True, None),
        ("C", "Free", None, None, ["Misc"], None, None, '{"color":null}', None, None, None, None),
    ]


def test_unknown_format_and_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "x.xlsx"
    p.write_bytes(b"PK")
    with pytest.raises(IngestError, match="cannot tell the format"):
        read(p)
    e = tmp_path / "e.csv"
    e.write_text("")
    with pytest.raises(IngestError, match="empty"):
        read(e)


def test_empty_type_cell_is_unknown_not_defaulted(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("user_id,item_id,event_type\na,x,view\nb,y,\n")
    ev, _, rep = read_events(p, event_type="purchase")
    assert ev["event_type"].to_list() == ["view"]
    assert rep.rejected == {"unknown_event_type": 1}
    assert rep.examples["unknown_event_type"] == [(3, "event_type", None)]
