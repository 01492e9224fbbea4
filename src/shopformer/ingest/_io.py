"""Low-level file reading: (gzip-)compressed bytes, lossy decoding, tables of strings.

Every reader returns a DataFrame with a ``_line`` column (1-based file line) next to
the source columns; text columns are read as strings (no type inference), so ids stay
exactly as written.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import polars as pl

from .report import IngestError

LINE = "_line"
REPLACEMENT = "\ufffd"

TABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXT = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: Path) -> str:
    """csv / tsv / jsonl / parquet from the file name (``.gz`` is looked through)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXT:
        return _EXT[suffixes[-1]]
    raise IngestError(
        f"{path}: cannot tell the format from the file name; pass fmt= one of "
        f"{', '.join(TABLE_FORMATS)} (or an adapter name)"
    )


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the file is gzip-compressed (by its magic bytes)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise IngestError(f"{path}: cannot read file: {e}") from e
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise IngestError(f"{path}: corrupt gzip data: {e}") from e
    return data


def decode(data: bytes, encoding: str = "utf8") -> str:
    """Decode bytes; invalid UTF-8 becomes U+FFFD (lossy) so nothing stops the read."""
    enc = encoding.lower().replace("-", "").replace("_", "")
    if enc in ("utf8", "utf8lossy"):
        return data.decode("utf-8", errors="replace")
    return data.decode(encoding, errors="replace")


def read_lines(path: Path, encoding: str = "utf8") -> pl.DataFrame:
    """One row per line of text: columns ``_line`` (1-based) and ``text``.

    The split runs in Polars (one string, split once), not in a Python loop. A final
    newline does not make an extra empty line; ``\\r`` of CRLF endings is removed.
    """
    text = decode(read_bytes(path), encoding)
    if text.endswith("\n"):
        text = text[:-1]
    lines = pl.Series("text", [text]).str.split("\n").explode()
    if "\r" in text:
        lines = lines.str.strip_suffix("\r")
    return pl.DataFrame(
        {LINE: pl.int_range(1, len(lines) + 1, eager=True).cast(pl.Int64), "text": lines}
    )


def read_table(
    path: Path,
    fmt: str,
    *,
    separator: str | None = None,
    quote_char: str | None = "default",
    encoding: str = "utf8",
) -> pl.DataFrame:
    """Read a csv / tsv / jsonl / parquet file; add ``_line``.

    CSV/TSV columns are all strings (empty cells are null); JSONL and Parquet keep their
    types (callers cast what they use). ``_line`` is the 1-based file line: header is
    line 1 for CSV/TSV (exact unless a quoted field spans lines); for JSONL the line of
    the object (blank lines skipped); for Parquet the 1-based row number.
    """
    if fmt in ("csv", "tsv"):
        sep = separator or ("," if fmt == "csv" else "\t")
        if quote_char == "default":
            quote_char = '"' if fmt == "csv" else None
        data = read_bytes(path)
        enc = encoding.lower().replace("-", "").replace("_", "")
        if enc not in ("utf8", "utf8lossy"):
            data = decode(data, encoding).encode("utf-8")
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if not data or data.isspace():
            raise IngestError(f"{path}: file is empty")
        try:
            df = pl.read_csv(
                data,
                separator=sep,
                quote_char=quote_char,
                infer_schema=False,
                encoding="utf8-lossy",
                empty_string_is_null=True,
                row_index_name=LINE,
                row_index_offset=2,
            )
        except pl.exceptions.PolarsError as e:
            raise IngestError(f"{path}: cannot parse as {fmt.upper()}: {e}") from e
        df = df.rename({c: c.strip() for c in df.columns if c != LINE and c != c.strip()})
        return df.with_columns(pl.col(LINE).cast(pl.Int64))
    if fmt == "jsonl":
        text = decode(read_bytes(path), encoding)
        try:
            df = pl.read_ndjson(io.BytesIO(text.encode("utf-8")), infer_schema_length=None)
        except pl.exceptions.PolarsError as e:
            raise IngestError(f"{path}: cannot parse as JSON Lines: {e}") from e
        lines = pl.Series([text]).str.split("\n").explode()
        nonblank = (lines.str.strip_chars().str.len_bytes() > 0).arg_true() + 1
        if len(nonblank) == df.height:
            line = nonblank.cast(pl.Int64)
        else:  # should not happen; fall back to the record number
            line = pl.int_range(1, df.height + 1, eager=True).cast(pl.Int64)
        return df.with_columns(line.alias(LINE))
    if fmt == "parquet":
        try:
            df = pl.read_parquet(io.BytesIO(read_bytes(path)))
        except pl.exceptions.PolarsError as e:
            raise IngestError(f"{path}: cannot read Parquet: {e}") from e
        return df.with_row_index(LINE, offset=1).with_columns(pl.col(LINE).cast(pl.Int64))
    raise IngestError(f"{path}: unknown table format {fmt!r}; expected one of {TABLE_FORMATS}")
