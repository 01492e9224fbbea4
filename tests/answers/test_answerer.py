from dataclasses import replace

import numpy as np
import pytest

from shopformer.answers import Answerer, UnknownProduct, frame_from_records
from shopformer.answers.features import FEATURES

from .conftest import TOPICS, HashingEncoder, quick_config


def _item_with(frame, answer: str) -> str:
    return frame.filter(frame["answer"] == answer)["item_id"][0]


def test_the_known_best_answer_comes_first(synthetic):
    a, frame = synthetic["answerer"], synthetic["frame"]
    for variants, answer, *_ in TOPICS:
        item = _item_with(frame, answer)
        found = a.answer(item, variants[0], k=3)
        assert found.answers[0].answer == answer, (variants[0], found.answers)
        assert [x.score for x in found.answers] == sorted((x.score for x in found.answers), reverse=True)
        assert len(found.answers) == 3


def test_held_out_questions_rank_their_true_answer_high_and_every_stage_is_reported(synthetic):
    a, split = synthetic["answerer"], synthetic["split"]
    test = np.flatnonzero(split == "test")
    m = a.evaluate(test, synthetic["qvecs"])
    assert m["questions"] + m["skipped_single_answer"] == len(test)
    for method in ("bm25", "minilm", "hybrid", "rerank"):
        assert 0.0 <= m[method]["mrr"] <= 1.0 and 0.0 <= m[method]["recall@5"] <= 1.0
    assert m["rerank"]["mrr"] > 0.9  # the questions share their topic's words with the true answer
    assert a.booster is not None and a.report["reranker"]["grid"]
    assert set(a.report["reranker"]["importance"]) == set(FEATURES)
    assert a.report["fusion"]["kind"] in ("convex", "rrf")  # chosen on validation


def test_yes_no_questions_get_yes_or_no_with_a_confidence(synthetic):
    a, frame = synthetic["answerer"], synthetic["frame"]
    filt = a.answer(_item_with(frame, TOPICS[1][1]), "does this come with a water filter")
    assert filt.yes_no is not None and filt.yes_no.answer == "yes" and 0.5 <= filt.yes_no.confidence <= 1.0
    volts = a.answer(_item_with(frame, TOPICS[6][1]), "will it work on 220 volt outlets")
    assert volts.yes_no is not None and volts.yes_no.answer == "no"
    where = a.answer(_item_with(frame, TOPICS[3][1]), "where is the reset button located")
    assert where.yes_no is None and where.p_yes_no_question < 0.5  # an open question: no yes/no


def test_unknown_product(synthetic):
    with pytest.raises(UnknownProduct):
        synthetic["answerer"].answer("NOPE", "is it loud")


def test_save_and_load_give_the_same_answers(synthetic, tmp_path):
    a, frame = synthetic["answerer"], synthetic["frame"]
    a.save(tmp_path / "answers")
    b = Answerer.load(tmp_path / "answers", encoder=HashingEncoder())
    try:
        for variants, answer, *_ in TOPICS[:4]:
            item = _item_with(frame, answer)
            x, y = a.answer(item, variants[1]), b.answer(item, variants[1])
            assert [r.qa_id for r in x.answers] == [r.qa_id for r in y.answers]
            np.testing.assert_allclose([r.score for r in x.answers], [r.score for r in y.answers], rtol=1e-6)
            assert (x.yes_no is None) == (y.yes_no is None)
            if x.yes_no is not None:
                assert x.yes_no.confidence == pytest.approx(y.yes_no.confidence, rel=1e-5)
        assert b.fusion == a.fusion and b.config == a.config
    finally:
        b.index.close()
    with pytest.raises(FileNotFoundError, match="answer build"):
        Answerer.load(tmp_path / "nothing")


def test_qa_ids_must_be_positions():
    frame, _ = frame_from_records([{"asin": "A", "question": "q", "answer": "a"}])
    shifted = frame.with_columns(frame["qa_id"] + 1)
    with pytest.raises(ValueError, match="qa_id"):
        Answerer(quick_config(), shifted, np.zeros((1, 4)), None, None)


def test_a_slice_of_real_amazon_qa_ranks_better_than_chance(shared_data):
    from shopformer.answers import SplitConfig, load_qa, temporal_split
    from shopformer.answers.protocol import expected_rank_metrics

    path = shared_data / "amazon-qa" / "qa_Appliances.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    frame, _ = load_qa(path, limit=600)
    split = temporal_split(frame, SplitConfig())
    enc = HashingEncoder(256)
    a = Answerer.fit(replace(quick_config(), adapter=None), frame, split, enc)  # test_adapter.py tests it
    try:
        test = np.flatnonzero(split == "test")
        m = a.evaluate(test, enc.encode(frame["question"].to_list()))
        chance = np.mean([expected_rank_metrics(np.zeros(len(a.sets.of(i))), 0)[0] for i in test
                          if len(a.sets.of(i)) >= 2])
        assert m["questions"] > 50
        assert m["bm25"]["mrr"] > chance + 0.05 and m["rerank"]["mrr"] > chance + 0.05, (m, chance)
    finally:
        a.close()
