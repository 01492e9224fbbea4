"""Spelling correction against the catalog's words; autocomplete."""

from __future__ import annotations

from shopformer.search.spelling import Speller, SpellingConfig
from shopformer.search.suggest import Suggester


def speller() -> Speller:
    s = Speller()
    for words in (["galvanized", "pipe"], ["galvanized", "nails"], ["pressure", "treated", "lumber"],
                  ["paper", "towel"], ["pipe", "wrench"], ["2x4"]):
        s.add(words)
    return s


def test_unknown_words_are_corrected_to_the_closest_catalog_word():
    s = speller()
    fixed, changes = s.correct(["galvinized", "pipe", "preasure", "treeted", "lumber"])
    assert fixed == ["galvanized", "pipe", "pressure", "treated", "lumber"]
    assert changes == {"galvinized": "galvanized", "preasure": "pressure", "treeted": "treated"}


def test_known_short_and_numeric_words_are_kept():
    s = speller()
    assert s.correct(["pipe", "pap", "2x5", "zzzzzzzzzz"]) == (["pipe", "pap", "2x5", "zzzzzzzzzz"], {})


def test_other_forms_of_a_catalog_word_are_kept():
    s = speller()
    assert s.correct(["pipes", "wrenches", "galvanize"]) == (["pipes", "wrenches", "galvanize"], {})


def test_short_words_allow_one_edit_only():
    s = speller()
    assert s.correct_word("towl") == "towel"  # one edit
    assert s.correct_word("twol") == "twol"  # two edits on a short word: kept


def test_most_used_word_wins_among_equally_close():
    s = Speller()
    s.add(["paint"])
    for _ in range(3):
        s.add(["pains"])
    assert s.correct_word("painx") == "pains"


def test_removal_and_disabled():
    s = speller()
    s.remove(["paper", "towel"])
    assert "paper" not in s and s.correct_word("papper") == "papper"
    off = Speller(SpellingConfig(enabled=False), dict(s.counts))
    assert off.correct_word("galvinized") == "galvinized"


def test_suggestions_past_queries_first_then_completions():
    words = {"drill": 5, "driver": 3, "dryer": 2, "bits": 4}
    s = Suggester(words)
    s.record(["cordless drill", "Cordless  Drill", "drill bits", "cordless driver"])
    got = s.suggest("cordless dr", 5)
    assert [(x.text, x.kind) for x in got] == [
        ("cordless drill", "query"), ("cordless driver", "query"), ("cordless dryer", "completion")]
    assert got[0].count == 2
    assert [x.text for x in s.suggest("dri", 10)] == ["drill bits", "drill", "driver"]
    assert s.suggest("", 1)[0].text == "cordless drill"  # the most searched
    assert s.suggest("zzz") == []


def test_suggestions_ignore_empty_and_huge_queries():
    s = Suggester({})
    s.record(["", "   ", "x" * 1000])
    assert s.suggest("") == []


def test_updates_after_the_index_is_built_are_seen():
    s = speller()
    s.warm()
    assert s.correct_word("shovl") == "shovl"
    s.add(["shovel"])
    assert s.correct_word("shovl") == "shovel"
    s.remove(["shovel"])
    assert s.correct_word("shovl") == "shovl"
    s.add(["paints"])
    for _ in range(3):
        s.add(["pains"])
    assert s.correct_word("painx") == "pains"  # the most used, by the live counts


def test_concurrent_first_corrections_are_safe():
    from concurrent.futures import ThreadPoolExecutor

    s = speller()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda w: s.correct_word(w), ["galvinized", "preasure", "treeted", "pipes"] * 50))
    assert got[:4] == ["galvanized", "pressure", "treated", "pipes"] and len(set(got)) == 4


def test_stems_are_right_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    from shopformer.search.features import _stemmer

    words = [f"{w}{i}ings" for i in range(300) for w in ("runn", "batter", "plumb")]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda w: _stemmer().stemWord(w), words))
    assert got == [_stemmer().stemWord(w) for w in words]
