"""Normalization of units, numbers and dimensions; synonyms files."""

from __future__ import annotations

import pytest

from shopformer.search.analysis import Synonyms, normalize


@pytest.mark.parametrize(
    "a, b",
    [
        ("1/2 in. pipe", '1/2" pipe'),
        ("1/2 in. pipe", "1/2 inch pipe"),
        ("1/2 in. pipe", "0.5in pipe"),
        ("1/2 in. pipe", ".5 inches pipe"),
        ("1-1/4 in.", "1 1/4 inch"),
        ("1-1/4 in.", "1.25in"),
        ("10 ft. hose", "10 foot hose"),
        ("10 ft. hose", "10' hose"),
        ("5 gal. bucket", "5 gallon bucket"),
        ("7.5 cu. ft. dryer", "7.5 cubic feet dryer"),
        ("100,000 BTU", "100000 btu"),
        ("18-Volt drill", "18v drill"),
        ("60-Watt bulb", "60 watts bulb"),
    ],
)
def test_spellings_of_a_measure_meet(a, b):
    assert normalize(a) == normalize(b)


def test_number_and_unit_tokens():
    assert normalize("3/4 in.") == "0.75 0.75in"
    assert normalize("Copper Pipe 1/2 in. x 10 ft.").split()[:2] == ["copper", "pipe"]
    assert "2x4" in normalize("2 in. x 4 in. x 8 ft. stud").split()
    assert {"2x4", "4x8"} <= set(normalize("2 x 4 x 8").split())
    assert "32x80" in normalize("screen door 32x80").split()
    assert "32x80" in normalize("32 in. x 80 in. door").split()


def test_hyphens_give_parts_and_joined_word():
    assert normalize("Semi-Gloss") == "semi gloss semigloss"


def test_punctuation_and_syntax_characters_vanish():
    assert normalize('fans " ( ) : * ~ ^ in BATHROOM') == "fans in bathroom"
    assert normalize("") == "" and normalize(None) == ""


def test_bad_fraction_is_kept_as_text():
    assert "1/0" not in normalize("1/0 in")  # split into numbers, no crash


def test_synonyms_equivalence_and_one_way():
    syn = Synonyms.parse("tv, television\nfridge, icebox => refrigerator\n# a comment\n\nac => air conditioner")
    assert syn.expand(["tv"]) == [("television",)]
    assert syn.expand(["television"]) == [("tv",)]
    assert syn.expand(["icebox"]) == [("refrigerator",)]
    assert syn.expand(["refrigerator"]) == []
    assert syn.expand(normalize("window ac unit").split()) == [("air", "conditioner")]
    assert len(syn) == 5


def test_synonym_phrases_match_multiword_keys():
    syn = Synonyms.parse("air conditioner => ac")
    assert syn.expand(["portable", "air", "conditioner"]) == [("ac",)]


@pytest.mark.parametrize("bad", ["tv", "a => b => c", "=> x", "x =>"])
def test_bad_synonym_lines_name_the_line(bad):
    with pytest.raises(ValueError, match="line 2"):
        Synonyms.parse("tv, television\n" + bad, source="syn.txt")


def test_synonyms_file(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text("faucet, tap\n", encoding="utf-8")
    assert Synonyms.from_file(path).expand(["tap"]) == [("faucet",)]
