import numpy as np
import pytest

from shopformer.answers import frame_from_records
from shopformer.answers.protocol import CandidateSets, expected_rank_metrics


def test_expected_rank_metrics_by_hand():
    assert expected_rank_metrics(np.array([3.0, 1.0, 2.0]), 0) == (1.0, 1.0)
    assert expected_rank_metrics(np.array([1.0, 3.0, 2.0]), 0, k=2) == (pytest.approx(1 / 3), 0.0)
    rr, rec = expected_rank_metrics(np.zeros(4), 0, k=2)  # all tied: uniform over ranks 1..4
    assert rr == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4) and rec == pytest.approx(0.5)
    rr, rec = expected_rank_metrics(np.array([1.0, 2.0, 1.0, 0.0]), 0, k=2)  # one above, one tied: rank 2 or 3
    assert rr == pytest.approx((1 / 2 + 1 / 3) / 2) and rec == pytest.approx(0.5)


def test_candidates_are_the_true_answer_and_the_products_other_distinct_answers():
    recs = [{"asin": "A", "question": "q0", "answer": "Yes."}, {"asin": "A", "question": "q1", "answer": "yes"},
            {"asin": "A", "question": "q2", "answer": "No"}, {"asin": "A", "question": "q3", "answer": "no!"},
            {"asin": "B", "question": "q4", "answer": "Blue"}, {"asin": "C", "question": "q5", "answer": "x"},
            {"asin": "C", "question": "q6", "answer": "X"}]
    frame, _ = frame_from_records(recs)
    sets = CandidateSets(frame)
    assert sets.of(0).tolist() == [0, 2]  # "yes" = "Yes." dropped; "no!" = "No" kept once
    assert sets.of(2).tolist() == [2, 0]
    assert sets.of(4).tolist() == [4]  # a single Q&A: nothing to rank
    assert sets.of(5).tolist() == [5]  # no other distinct answer
    assert sets.others(0).tolist() == [1, 2, 3]  # the evidence: every other answer
