"""Product Q&A: loading McAuley's Amazon question/answer files and splitting questions.

A record is one question with its one answer about one product (``asin``), typed
``questionType`` ("yes/no" | "open-ended") and, for yes/no questions, ``answerType``
("Y" | "N" | "?"). The 2016 files hold no product titles or descriptions, so a
product's candidate answers are its past answers alone. Both shapes are read: strict
JSON Lines and the original one-Python-literal-per-line (``ast.literal_eval``), gzip or
not. Answer times come from ``unixTime``, else ``answerTime`` ("Jun 27, 2014", or "14
days ago" for answers crawled within a month; see :func:`_place_relative`).
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

#: the frame every answers component reads
COLUMNS = ("qa_id", "item_id", "question", "answer", "question_type", "answer_type", "answered_at")
YES_NO = "yes/no"


class QAFormatError(ValueError):
    """A Q&A file that cannot be read (says which line and why)."""


DAYS_AGO = re.compile(r"^\s*(\d+)\s+days?\s+ago\s*$", re.I)


def _when(record: dict) -> datetime | int | None:
    """The answer's time; an ``int`` for a relative "N days ago" (placed by
    :func:`frame_from_records`); None when there is none."""
    if record.get("unixTime") is not None:
        return datetime.fromtimestamp(int(record["unixTime"]), UTC)
    text = (record.get("answerTime") or "").strip()
    if m := DAYS_AGO.match(text):
        return int(m.group(1))
    try:
        return datetime.strptime(text, "%b %d, %Y").replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


def _place_relative(rows: list[dict]) -> None:
    """"N days ago" answers (crawled within a month of the crawl, whose date the data does
    not give) are counted back from a reference just after the newest absolute date: the
    newest date + the largest N + 1 day. So they come after every dated answer, in
    their own order: what a split by time needs."""
    relative = [r for r in rows if isinstance(r["answered_at"], int)]
    if not relative:
        return
    dated = [r["answered_at"] for r in rows if isinstance(r["answered_at"], datetime)]
    newest = max(dated) if dated else datetime(2000, 1, 1, tzinfo=UTC)
    reference = newest + timedelta(days=max(r["answered_at"] for r in relative) + 1)
    for r in relative:
        r["answered_at"] = reference - timedelta(days=r["answered_at"])


def _records(path: Path):  # noqa: ANN202 - yields (line number, dict)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError:
                try:  # the original release: Python literals with single quotes
                    yield n, ast.literal_eval(line)
                except (ValueError, SyntaxError) as exc:
                    raise QAFormatError(f"{path}:{n}: neither JSON nor a Python literal ({exc})") from None


def frame_from_records(records: list[dict]) -> tuple[pl.DataFrame, Counter]:
    """The Q&A frame of ``records`` (dicts with asin/question/answer ...) and the
    count of records dropped, by reason (nothing is dropped silently)."""
    rows, dropped = [], Counter()
    for r in records:
        item, q, a = (str(r.get(k) or "").strip() for k in ("asin", "question", "answer"))
        if not item:
            dropped["no asin"] += 1
            continue
        if not q or not a:
            dropped["empty question or answer"] += 1
            continue
        qtype = r.get("questionType") or None
        rows.append({"item_id": item, "question": q, "answer": a,
                     "question_type": qtype if qtype in (YES_NO, "open-ended") else None,
                     "answer_type": r.get("answerType") if r.get("answerType") in ("Y", "N", "?") else None,
                     "answered_at": _when(r)})
    _place_relative(rows)
    schema = {"item_id": pl.Utf8, "question": pl.Utf8, "answer": pl.Utf8, "question_type": pl.Utf8,
              "answer_type": pl.Utf8, "answered_at": pl.Datetime("us", "UTC")}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    frame = frame.with_row_index("qa_id").with_columns(pl.col("qa_id").cast(pl.Int64))
    return frame.select(COLUMNS), dropped


def load_qa(path: Path | str, limit: int | None = None) -> tuple[pl.DataFrame, Counter]:
    """Read a Q&A file (``.json``/``.jsonl``, gzip or not); ``limit``: first records only."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Q&A file {path} not found")
    records = []
    for _, rec in _records(path):
        if not isinstance(rec, dict):
            raise QAFormatError(f"{path}: a line is not an object")
        records.append(rec)
        if limit is not None and len(records) >= limit:
            break
    return frame_from_records(records)


@dataclass(frozen=True)
class SplitConfig:
    """Questions are split by answer time, globally: the latest ``test_frac`` of them are
    test, the ``valid_frac`` before them validation, the rest training (ties on the date
    are broken by a seeded shuffle; undated questions go to training)."""

    valid_frac: float = 0.15
    test_frac: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.valid_frac < 1 and 0 <= self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            raise ValueError(f"valid_frac and test_frac must be in [0, 1) and sum below 1, got "
                             f"{self.valid_frac}, {self.test_frac}")


def temporal_split(frame: pl.DataFrame, config: SplitConfig = SplitConfig()) -> np.ndarray:
    """(N,) array of "train" | "valid" | "test" per row of ``frame``."""
    n = frame.height
    rng = np.random.default_rng(config.seed)
    when = frame["answered_at"].dt.epoch("s").fill_null(-(2**62)).to_numpy()
    order = np.lexsort((rng.permutation(n), when))  # by time, ties shuffled
    split = np.full(n, "train", dtype=object)
    n_test, n_valid = int(round(n * config.test_frac)), int(round(n * config.valid_frac))
    if n_test:
        split[order[n - n_test:]] = "test"
    if n_valid:
        split[order[n - n_test - n_valid: n - n_test]] = "valid"
    return split
