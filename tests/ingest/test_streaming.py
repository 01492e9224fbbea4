"""The streaming ingest gives the eager ingest's events and report (duplicates aside)."""

import gzip
import json

import numpy as np
import polars as pl
import pytest

from shopformer.ingest import IngestError, ingest_to_folder
from shopformer.ingest.streaming import LARGE_MARKER, is_large_folder, should_stream, stream_events_to_folder

BAD_CSV = "\n".join([
    "user,item,type,ts,value",
    "u1,i1,view,2020-01-01 10:00,",
    "u1,i2,purchase,2020-01-01 11:00,2",
    ",i3,view,2020-01-01,",  # line 4: missing_user_id
    "u2,i1,teleport,2020-01-01,",  # line 5: unknown_event_type
    "u2,,view,2020-01-01,",  # line 6: missing_item_id
    "u2,i9,view,notatime,",  # line 7: bad_timestamp
    "u2,i4,purchase,2020-01-02,-1",  # line 8: negative_quantity
    "u3,i5,view,2020-01-03,abc",  # line 9: bad_value
    "u3,a/b,view,2020-01-03,",  # line 10: kept, warning unaddressable_id
    "u3,,search,2020-01-03,",  # line 11: missing_query
    "u4,i7,Add-To-Cart,1577836800,1",
    "u4,i8,view,,",  # kept, warning missing_timestamp
    "u5,i1,transaction,2020-01-05T08:00:00Z,1",
]) + "\n"


def test_bad_rows_counted_by_reason_as_the_eager_path(tmp_path):
    src = tmp_path / "e.csv"
    src.write_text(BAD_CSV)
    eager = ingest_to_folder(tmp_path / "eager", src)
    streamed = stream_events_to_folder(tmp_path / "stream", src)
    assert streamed.rejected == {"missing_user_id": 1, "unknown_event_type": 1, "missing_query": 1,
                                 "missing_item_id": 1, "bad_timestamp": 1, "bad_value": 1, "negative_quantity": 1}
    assert streamed.rejected == eager.rejected
    assert streamed.examples == eager.examples
    assert streamed.examples["bad_timestamp"] == [(7, "ts", "notatime")]
    assert streamed.warnings == eager.warnings == {"unaddressable_id": 1, "missing_timestamp": 1}
    assert (streamed.rows_read, streamed.rows_accepted) == (eager.rows_read, eager.rows_accepted) == (13, 6)
    a = pl.read_parquet(tmp_path / "eager" / "events.parquet")
    b = pl.read_parquet(tmp_path / "stream" / "events.parquet")
    assert a.equals(b)
    assert b["event_type"].to_list() == ["view", "purchase", "view", "add_to_cart", "view", "purchase"]
    assert b["position"].to_list() == list(range(6))
    assert json.loads((tmp_path / "stream" / "ingest_report.json").read_text())["rows_rejected"] == 7
    assert is_large_folder(tmp_path / "stream") and not is_large_folder(tmp_path / "eager")


def test_parquet_with_typed_columns_matches_eager(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    ev = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "user_id": rng.integers(0, 300, n),  # integer ids become strings
        "product_id": [f"p{x}" for x in rng.zipf(1.3, n) % 500],
        "event_type": rng.choice(["view", "purchase", "cart", "search"], n),
        "timestamp": rng.integers(1_600_000_000, 1_600_100_000, n),
        "query": [None] * n,
        "value": rng.normal(size=n),
    })
    src = tmp_path / "e.parquet"
    ev.write_parquet(src)
    eager = ingest_to_folder(tmp_path / "eager", src)
    streamed = stream_events_to_folder(tmp_path / "stream", src, row_group_rows=1000)
    assert streamed.rejected == eager.rejected and streamed.rejected["missing_query"] > 0
    assert streamed.examples == eager.examples
    a = pl.read_parquet(tmp_path / "eager" / "events.parquet")
    b = pl.read_parquet(tmp_path / "stream" / "events.parquet")
    assert a.equals(b) and b.height == streamed.rows_accepted
    import pyarrow.parquet as pq
    assert pq.ParquetFile(tmp_path / "stream" / "events.parquet").num_row_groups >= 3


def test_strict_mode_stops_at_the_first_bad_row_and_writes_nothing(tmp_path):
    src = tmp_path / "e.csv"
    src.write_text(BAD_CSV)
    with pytest.raises(IngestError, match=r"line 4: field 'user' value None rejected: missing_user_id"):
        stream_events_to_folder(tmp_path / "d", src, strict=True)
    assert not (tmp_path / "d" / "events.parquet").exists()


def test_refuses_what_it_cannot_do_safely(tmp_path):
    src = tmp_path / "e.csv"
    src.write_text(BAD_CSV)
    stream_events_to_folder(tmp_path / "d", src)
    with pytest.raises(IngestError, match="already holds events"):
        stream_events_to_folder(tmp_path / "d", src)
    gz = tmp_path / "e.csv.gz"
    gz.write_bytes(gzip.compress(BAD_CSV.encode()))
    with pytest.raises(IngestError, match="gzip"):
        stream_events_to_folder(tmp_path / "g", gz, fmt="csv")
    with pytest.raises(IngestError, match="no user id column"):
        (tmp_path / "n.csv").write_text("item,type\ni1,view\n")
        stream_events_to_folder(tmp_path / "n", tmp_path / "n.csv")
    assert (tmp_path / "d" / LARGE_MARKER).exists()


def test_should_stream_by_size_and_format(tmp_path, monkeypatch):
    import shopformer.ingest.streaming as streaming

    src = tmp_path / "e.csv"
    src.write_text(BAD_CSV)
    assert not should_stream(src, None)
    monkeypatch.setattr(streaming, "STREAM_THRESHOLD_BYTES", 10)
    assert should_stream(src, None)
    assert not should_stream(src, "jsonl")
