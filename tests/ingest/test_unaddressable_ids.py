"""Ids the HTTP API could never look up through a URL path (``/``, control characters,
``.`` / ``..``): ingest keeps the rows, counts them under a warning with examples, and
strict mode stops at the first, naming file, line and field."""

from __future__ import annotations

import pytest

from shopformer.ingest import IngestError, ingest, load_folder

EVENTS = """\
user_id,item_id,event_type,timestamp
u1,i1,view,2024-01-01 10:00:00
u/2,i1,view,2024-01-01 10:01:00
u3,..,purchase,2024-01-01 10:02:00
u4,i2,view,2024-01-01 10:03:00
"""
CATALOG = """\
item_id,title
i1,One
i2,Two
AB/12,Slash
..,Dots
"""


def test_rows_are_kept_with_a_warning_naming_them(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "catalog.csv").write_text(CATALOG)
    report = ingest(tmp_path / "events.csv", "csv", tmp_path / "data", catalog=tmp_path / "catalog.csv")
    assert report.rows_accepted == 4 and report.rejected == {}
    assert report.warnings["unaddressable_id"] == 2
    assert report.examples["unaddressable_id"] == [(3, "user_id", "u/2"), (4, "item_id", "..")]
    assert report.catalog.warnings["unaddressable_id"] == 2
    assert report.catalog.examples["unaddressable_id"] == [(4, "item_id", "AB/12"), (5, "item_id", "..")]
    md = report.to_markdown()
    assert "| unaddressable_id | 2 | 3: user_id = 'u/2'; 4: item_id = '..' |" in md
    events, products = load_folder(tmp_path / "data")
    assert sorted(events["user_id"].to_list()) == ["u/2", "u1", "u3", "u4"]  # nothing dropped
    assert "AB/12" in products["item_id"].to_list()


def test_strict_mode_stops_at_the_first_naming_the_line(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS)
    with pytest.raises(IngestError, match=r"line 3: field 'user_id' value 'u/2' rejected: unaddressable_id"):
        ingest(tmp_path / "events.csv", "csv", tmp_path / "data", strict=True)
    (tmp_path / "catalog.csv").write_text(CATALOG)
    with pytest.raises(IngestError, match=r"line 4: field 'item_id' value 'AB/12'.*'/'"):
        ingest(None, None, tmp_path / "data2", catalog=tmp_path / "catalog.csv", strict=True)
