"""Cancellation matching on a hand-made log with known answers."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from shopformer.risk.labels import build_log, labelled, read_raw

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ROWS = [
    "1001,22222,CUP,5,2011-01-01 10:00:00,2.0,100,United Kingdom",  # line 0: A's first X
    "1002,22222,CUP,3,2011-01-05 10:00:00,2.0,100,United Kingdom",  # line 1: A's second X
    "1002,33333,MUG,2,2011-01-05 10:00:00,4.0,100,United Kingdom",  # line 2: never cancelled
    "1003,22222,CUP,7,2011-01-06 10:00:00,2.0,200,France",  # line 3: B's X
    "C2001,22222,CUP,-2,2011-01-07 10:00:00,2.0,100,United Kingdom",  # A cancels X -> line 1, not 0, not B's 3
    "C2002,22222,CUP,-1,2011-01-09 10:00:00,2.0,100,United Kingdom",  # again -> line 1 (one line, 3 units)
    "C2003,44444,BOWL,-1,2011-01-07 10:00:00,3.0,100,United Kingdom",  # A never bought 44444: unmatched
    "1004,55555,JAR,1,2011-02-01 10:00:00,1.0,200,France",  # line 4 ...
    "C2004,55555,JAR,-1,2011-02-01 10:00:00,1.0,200,France",  # ... cancelled at the same minute -> line 4
    "1005,66666,PEN,1,2011-02-02 10:00:00,1.0,200,France",  # line 5: cancelled 40 days later
    "C2005,66666,PEN,-1,2011-03-14 10:00:00,1.0,200,France",
    "1006,POST,POSTAGE,1,2011-02-02 10:00:00,18.0,200,France",  # not a product: left out
    "1007,22222,CUP,1,2011-02-03 10:00:00,2.0,,United Kingdom",  # no customer: left out
    "C2006,POST,POSTAGE,-1,2011-02-04 10:00:00,18.0,200,France",  # not a product: left out
    "1008,77777,TAPE,1,2011-04-30 10:00:00,1.0,300,United Kingdom",  # the last line: the end of the log
]


def _log(tmp_path):
    path = tmp_path / "retail.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return build_log(read_raw([path]))


def test_each_cancellation_lands_on_the_customers_latest_earlier_line(tmp_path):
    log = _log(tmp_path)
    lines = log.lines.sort("line_id")
    assert lines["invoice"].to_list() == ["1001", "1002", "1002", "1003", "1004", "1005", "1008"]
    cancelled = dict(zip(lines["invoice"] + "/" + lines["stock_code"], lines["cancel_time"]))
    assert cancelled["1001/22222"] is None  # the older line of the same code is not the one undone
    assert cancelled["1002/22222"] == datetime(2011, 1, 7, 10)  # the first of its two cancellations
    assert cancelled["1002/33333"] is None and cancelled["1003/22222"] is None  # another code, another customer
    assert cancelled["1004/55555"] == datetime(2011, 2, 1, 10)  # same minute counts ("at or before")
    qty = dict(zip(lines["invoice"] + "/" + lines["stock_code"], lines["cancelled_quantity"]))
    assert qty["1002/22222"] == 3
    assert log.matching == {"cancellation_lines": 5, "matched": 4, "unmatched": 1, "original_lines": 7,
                            "original_lines_cancelled": 3}
    assert log.rejected == {"no customer id": 1, "not a product code (postage, fees, manual)": 2}


def test_label_is_cancelled_within_the_horizon_and_needs_the_whole_horizon(tmp_path):
    lines = _log(tmp_path).lines
    lab = labelled(lines, horizon_days=30)
    got = dict(zip(lab["invoice"] + "/" + lab["stock_code"], lab["cancelled"]))
    assert got["1002/22222"] == 1 and got["1004/55555"] == 1
    assert got["1005/66666"] == 0  # cancelled after 40 days: outside the 30-day horizon
    assert "1008/77777" not in got  # its horizon runs past the end of the log: not labelled
    assert lab.filter(pl.col("invoice") == "1001")["cancelled"].to_list() == [0]


def test_overlapping_files_are_read_once(tmp_path):
    older = tmp_path / "ii.csv"  # Online Retail II's spelling, running into the newer file's period
    older.write_text("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
                     "900,22222,CUP,1,2010-11-30 10:00:00,2.0,100.0,United Kingdom\n"
                     "901,22222,CUP,1,2010-12-02 10:00:00,2.0,100.0,United Kingdom\n")
    newer = tmp_path / "i.csv"
    newer.write_text(f"{HEADER}\n901,22222,CUP,1,2010-12-02 10:00:00,2.0,100,United Kingdom\n"
                     "902,22222,CUP,1,2010-12-01 09:00:00,2.0,100,United Kingdom\n")
    raw = read_raw([newer, older])
    assert sorted(raw["invoice"].to_list()) == ["900", "901", "902"]
    assert set(raw["customer_id"].to_list()) == {"100"}  # "100.0" of the II spelling is the same customer
