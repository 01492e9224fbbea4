"""The ingest report (what was read, kept and rejected, and why) and the ingest error."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Rejection reasons, in the order they are checked: a row is counted under the first
#: reason that applies to it, so every rejected row is counted exactly once.
EVENT_REASONS: tuple[str, ...] = (
    "invalid_utf8",
    "missing_user_id",
    "unknown_event_type",
    "missing_query",
    "missing_item_id",
    "bad_timestamp",
    "bad_value",
    "negative_quantity",
    "unknown_item",
    "duplicate",
)
PRODUCT_REASONS: tuple[str, ...] = (
    "invalid_utf8",
    "missing_item_id",
    "bad_price",
    "bad_timestamp",
    "duplicate",
)

MAX_EXAMPLES = 5


class IngestError(ValueError):
    """A file cannot be ingested (missing column, unreadable file, or a bad row in strict
    mode). The message names the file and, for a bad row, its line, field, value and
    reason."""


@dataclass
class IngestReport:
    """What one ingest of one source did.

    ``rows_read == rows_accepted + sum(rejected.values())`` always holds. ``examples``
    holds up to five ``(line, field, value)`` triples per reason (and per warning that
    names rows, e.g. ``unaddressable_id``); lines are 1-based file lines (the CSV header
    is line 1; for Parquet, the 1-based row number; for a sequence file, the line of the
    user). ``warnings`` counts kept rows that needed attention (e.g. ``repaired_utf8``;
    ``unaddressable_id``: an id the HTTP API could never look up, see
    :data:`shopformer.types.UNADDRESSABLE_ID`). ``catalog`` is the report of the products read in the same
    call (a catalog file given beside the events, or a catalog derived from the events).
    ``pseudonym_key``: the fingerprint of the key whose pseudonyms replaced ``user_id``
    and ``session_id`` (examples then show pseudonyms too), None when ids are raw.
    """

    source: str
    format: str
    rows_read: int = 0
    rows_accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[int, str, str | None]]] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    kind: str = "events"
    seconds: float = 0.0
    catalog: IngestReport | None = None
    pseudonym_key: str | None = None

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_rejected"] = self.rows_rejected
        d["examples"] = {
            k: [{"line": ln, "field": f, "value": v} for ln, f, v in ex]
            for k, ex in self.examples.items()
        }
        d["catalog"] = self.catalog.to_dict() if self.catalog is not None else None
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestReport:
        cat = d.get("catalog")
        return cls(
            source=d["source"],
            format=d["format"],
            rows_read=d.get("rows_read", 0),
            rows_accepted=d.get("rows_accepted", 0),
            rejected=dict(d.get("rejected", {})),
            examples={
                k: [(e["line"], e["field"], e["value"]) for e in ex]
                for k, ex in d.get("examples", {}).items()
            },
            warnings=dict(d.get("warnings", {})),
            kind=d.get("kind", "events"),
            seconds=d.get("seconds", 0.0),
            catalog=cls.from_dict(cat) if cat else None,
            pseudonym_key=d.get("pseudonym_key"),
        )

    def _md_lines(self, level: int = 2) -> list[str]:
        h = "#" * level
        out = [
            f"{h} Ingest report: {self.kind} from `{self.source}` ({self.format})",
            "",
            f"- rows read: {self.rows_read:,}",
            f"- rows accepted: {self.rows_accepted:,}",
            f"- rows rejected: {self.rows_rejected:,}",
            f"- time: {self.seconds:.2f} s",
            "",
        ]
        if self.pseudonym_key:
            out[-1:-1] = [f"- customer ids: pseudonymous (user_id, session_id; key fingerprint {self.pseudonym_key})"]
        if self.rejected:
            out += ["| reason | rows | examples (line: field = value) |", "|---|---:|---|"]
            for reason, n in self.rejected.items():
                ex = "; ".join(
                    f"{ln}: {f} = {_short(v)}" for ln, f, v in self.examples.get(reason, [])
                )
                ex = ex.replace("|", "\\|")
                out.append(f"| {reason} | {n:,} | {ex} |")
            out.append("")
        if self.warnings:
            out += ["| warning | rows | examples (line: field = value) |", "|---|---:|---|"]
            for k, v in self.warnings.items():
                ex = "; ".join(f"{ln}: {f} = {_short(x)}" for ln, f, x in self.examples.get(k, []))
                out.append(f"| {k} | {v:,} | {ex.replace('|', chr(92) + '|')} |")
            out.append("")
        if self.catalog is not None:
            out += self.catalog._md_lines(level + 1)
        return out

    def to_markdown(self) -> str:
        return "\n".join(self._md_lines()) + "\n"

    def rich_table(self):  # -> rich.table.Table
        """A Rich table with one row per rejection reason and warning (for the CLI)."""
        from rich.table import Table

        title = (
            f"{self.kind} from {self.source} ({self.format}): "
            f"{self.rows_read:,} read, {self.rows_accepted:,} accepted, "
            f"{self.rows_rejected:,} rejected"
        )
        t = Table(title=title)
        t.add_column("reason")
        t.add_column("rows", justify="right")
        t.add_column("examples (line: field = value)")
        for reason, n in self.rejected.items():
            ex = "\n".join(
                f"{ln}: {f} = {_short(v)}" for ln, f, v in self.examples.get(reason, [])
            )
            t.add_row(reason, f"{n:,}", ex)
        for k, v in self.warnings.items():
            ex = "\n".join(f"{ln}: {f} = {_short(x)}" for ln, f, x in self.examples.get(k, []))
            t.add_row(f"[yellow]warning: {k}[/yellow]", f"{v:,}", ex)
        return t


def _short(v: Any, n: int = 80) -> str:
    s = repr(v) if v is not None else "null"
    return s if len(s) <= n else s[: n - 1] + "…"
