"""Text normalization shared by documents and queries: units, numbers, dimensions, hyphens.

Shop queries spell the same measure many ways ("1/2 in.", "1/2 inch", '1/2"', ".5in");
catalog titles spell it another. :func:`normalize` rewrites text into whitespace-separated
tokens in which every such spelling meets the same token, so the lexical engine (whose
analyzer then lowercases, drops stop words and stems) matches them:

* numbers become one canonical decimal: ``3/4`` -> ``0.75``, ``1-1/4`` and ``1 1/4`` ->
  ``1.25``, ``100,000`` -> ``100000``, ``.5`` -> ``0.5``;
* a number followed by a unit (``in. inch " ft feet ' gal lbs cu. ft. sq ft volt watt
  ...``) gives the bare number and a bound token ``0.75in``, so a query with the unit
  rewards the unit and a query without it still matches the number;
* dimensions ``2x4``, ``2 x 4``, ``24 in. x 96 in.`` also give ``2x4`` / ``24x96``;
* hyphenated words give their parts and the joined word (``semi-gloss`` -> ``semi gloss
  semigloss``); other punctuation separates tokens (query-syntax characters such as
  ``" ( ) : * ~ ^`` are never passed to an engine as syntax).

:class:`Synonyms` reads a synonyms file (Solr's format: ``a, b, c`` for equivalents,
``a => b`` one way) and expands a normalized query.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

#: English stop words: the list Tantivy's (and Lucene's) English stop filter removes
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)

#: spelling -> canonical unit suffix; longer spellings first in the pattern below
UNITS: dict[str, str] = {
    "inches": "in", "inch": "in", "in.": "in", "in": "in", '"': "in", "''": "in", "”": "in",
    "feet": "ft", "foot": "ft", "ft.": "ft", "ft": "ft", "'": "ft", "’": "ft",
    "cubic feet": "cuft", "cubic foot": "cuft", "cu. ft.": "cuft", "cu.ft.": "cuft", "cu ft": "cuft",
    "cu. ft": "cuft", "cuft": "cuft",
    "square feet": "sqft", "square foot": "sqft", "sq. ft.": "sqft", "sq.ft.": "sqft", "sq ft": "sqft",
    "sq. ft": "sqft", "sqft": "sqft",
    "gallons": "gal", "gallon": "gal", "gal.": "gal", "gal": "gal",
    "quarts": "qt", "quart": "qt", "qt.": "qt", "qt": "qt",
    "ounces": "oz", "ounce": "oz", "oz.": "oz", "oz": "oz",
    "pounds": "lb", "pound": "lb", "lbs.": "lb", "lbs": "lb", "lb.": "lb", "lb": "lb",
    "volts": "v", "volt": "v", "v": "v",
    "watts": "w", "watt": "w", "w": "w",
    "amps": "amp", "amp": "amp", "amperes": "amp",
    "millimeters": "mm", "millimeter": "mm", "mm": "mm",
    "centimeters": "cm", "centimeter": "cm", "cm": "cm",
    "btus": "btu", "btu": "btu",
    "gauge": "ga", "ga.": "ga", "ga": "ga",
    "horsepower": "hp", "hp": "hp",
    "lights": "light", "light": "light", "lite": "light",
    "pieces": "pc", "piece": "pc", "pcs": "pc", "pc": "pc",
    "packs": "pk", "pack": "pk", "pk": "pk",
}
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"
# a number: mixed fraction (1-1/4, 1 1/4), fraction (3/4) or decimal (1.5, .5)
_NUMBER = rf"(?:\d+[- ]\d+/\d+|\d+/\d+|{_NUM})"
# a number, then (optionally, after a space or hyphen) a unit that ends at a word boundary
_MEASURE = re.compile(
    rf"(?<![\w.])(?P<num>{_NUMBER})(?:[ -]?(?P<unit>{_UNIT_ALT})(?=$|[^a-z0-9]))?"
)
# on normalized text: "24 24in x 96 96in" or "2 x 4"
# on normalized text: "24 24in x 96 96in" or "2 x 4"; a lookahead, so 2 x 4 x 8 gives 2x4 and 4x8
_DIMENSION = re.compile(r"(?<![\w.])(?=(\d+(?:\.\d+)?)(?: \1[a-z]+)? x (\d+(?:\.\d+)?)(?![\w.]))")
_WORD = re.compile(r"\d+\.\d+[a-z]*|[a-z0-9]+")


def _canonical(number: str) -> str:
    """``1-1/4`` -> ``1.25``, ``3/4`` -> ``0.75``, ``.5`` -> ``0.5``, ``10.0`` -> ``10``."""
    try:
        whole, _, frac = number.replace(" ", "-").rpartition("-") if "/" in number else ("", "", number)
        value = Fraction(frac) + (int(whole) if whole else 0)
    except (ValueError, ZeroDivisionError):
        return number
    if value.denominator > 1000:
        return number
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    return text or "0"


def _measure(m: re.Match) -> str:
    num = _canonical(m.group("num"))
    unit = m.group("unit")
    return f" {num} {num}{UNITS[unit]} " if unit else f" {num} "


def normalize(text: str | None) -> str:
    """Whitespace-separated tokens of ``text`` with units, numbers and dimensions made
    canonical (see the module docstring). Deterministic; the same for documents and queries."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text).lower().replace("×", "x")
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 100,000 -> 100000
    t = re.sub(r"(?<=[\d.\s])x(?=\.?\d)", " x ", t)  # 2x4 -> 2 x 4: the numbers, then the dimension
    t = _MEASURE.sub(_measure, t)
    t = re.sub(r"\s+", " ", t)
    dims = [f"{a}x{b}" for a, b in _DIMENSION.findall(t)]
    words: list[str] = []
    for chunk in t.split():
        if "-" in chunk.strip("-") and not chunk[0].isdigit():
            parts = _WORD.findall(chunk)
            words.extend(parts)
            if len(parts) > 1:
                words.append("".join(parts))
        else:
            words.extend(_WORD.findall(chunk))
    return " ".join(words + dims)


@dataclass(frozen=True)
class Synonyms:
    """Query expansions: ``rules`` maps a normalized phrase (a tuple of tokens) to the
    phrases that may replace it. Read with :meth:`from_file` / :meth:`parse`."""

    rules: dict[tuple[str, ...], tuple[tuple[str, ...], ...]]

    @classmethod
    def empty(cls) -> "Synonyms":
        return cls({})

    @classmethod
    def from_file(cls, path: str | Path) -> "Synonyms":
        return cls.parse(Path(path).read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "synonyms") -> "Synonyms":
        """Solr format, one rule a line: ``tv, television`` (each replaces the others) or
        ``fridge, icebox => refrigerator`` (left side -> right side); ``#`` comments."""
        rules: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.count("=>") > 1:
                raise ValueError(f"{source}, line {n}: more than one '=>'")
            left, arrow, right = line.partition("=>")
            lhs = [p for p in (normalize(x) for x in left.split(",")) if p]
            rhs = [p for p in (normalize(x) for x in right.split(",")) if p] if arrow else lhs
            if not lhs or (arrow and not rhs) or (not arrow and len(lhs) < 2):
                raise ValueError(f"{source}, line {n}: expected 'a, b' or 'a => b', got {line!r}")
            for a in lhs:
                for b in rhs:
                    if a != b:
                        rules.setdefault(tuple(a.split()), set()).add(tuple(b.split()))
        return cls({k: tuple(sorted(v)) for k, v in rules.items()})

    @property
    def longest(self) -> int:
        return max((len(k) for k in self.rules), default=0)

    def expand(self, tokens: list[str]) -> list[tuple[str, ...]]:
        """The replacement phrases for every phrase of ``tokens`` that has a rule."""
        out: list[tuple[str, ...]] = []
        for size in range(min(self.longest, len(tokens)), 0, -1):
            for i in range(len(tokens) - size + 1):
                out.extend(self.rules.get(tuple(tokens[i : i + size]), ()))
        return list(dict.fromkeys(out))

    def __len__(self) -> int:
        return len(self.rules)
