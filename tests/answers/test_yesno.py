"""The yes/no answer model: learners compared on validation only, the prior when none beats
always answering the majority there, calibration on validation, evidence from the past
only, abstaining, and saved models (old and new) loading."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shopformer.answers import (
    Answerer,
    AnswererConfig,
    YesNoConfig,
    YesNoModel,
    frame_from_records,
)
from shopformer.answers.lexical import AnswerIndex
from shopformer.answers.training import choose_learner, fit_answer_model, out_of_fold
from shopformer.answers.yesno import EVIDENCE_FEATURES, Evidence, type_features
from shopformer.search.fusion import FusionConfig

from .conftest import TOPICS, HashingEncoder

#: the evidence learners only: no re-ranker needed (the legacy one reads its ranking)
FAST = YesNoConfig(learners=("evidence-lr", "evidence-lgbm"))


def _records(n_products: int, labels, seed: int = 0) -> list[dict]:
    """Yes/no questions only (TOPICS' yes/no ones, a random variant), one a day."""
    rng = np.random.default_rng(seed)
    yes_no = [t for t in TOPICS if t[2] == "yes/no"]
    start, out = datetime(2014, 1, 1, tzinfo=UTC), []
    for p in range(n_products):
        for _ in range(4):
            t = int(rng.integers(len(yes_no)))
            variants, answer, _, _ = yes_no[t]
            atype = labels(rng, t)
            out.append({"asin": f"P{p:03d}", "question": variants[int(rng.integers(len(variants)))],
                        "answer": ("yes " if atype == "Y" else "no ") + answer.split(" ", 1)[1],
                        "questionType": "yes/no", "answerType": atype,
                        "unixTime": int((start + timedelta(days=len(out))).timestamp())})
    return out


@pytest.fixture
def indexes():
    """The lexical indexes the test made, closed after it."""
    made = []
    yield made
    for index in made:
        index.close()


def _answerer(records: list[dict], config: YesNoConfig = FAST, made: list | None = None):
    """An Answerer over ``records`` without the ranking models (fused MiniLM + BM25 only),
    every question a yes/no one, and a 60/20/20 split by time."""
    frame, _ = frame_from_records(records)
    enc = HashingEncoder()
    qv, av = enc.encode(frame["question"].to_list()), enc.encode(frame["answer"].to_list())
    index = AnswerIndex()
    index.add(frame["qa_id"].to_numpy(), frame["item_id"].to_list(), frame["answer"].to_list())
    if made is not None:
        made.append(index)
    a = Answerer(AnswererConfig(yesno=config, adapter=None, rerank=None), frame, av, index, FusionConfig(),
                 encoder=enc, question_vecs=qv)
    a.yesno = YesNoModel(config)
    a.yesno.fit_type(type_features(qv, a.questions), np.ones(frame.height, int), None, None)  # all yes/no ones
    n = frame.height
    split = np.array(["train"] * int(n * 0.6) + ["valid"] * int(n * 0.2) + ["test"] * (n - int(n * 0.6) - int(n * 0.2)))
    return a, split, qv


def _fit(a, split, qv) -> dict:
    return fit_answer_model(a, np.flatnonzero(split == "train"), np.flatnonzero(split == "valid"), qv)


def test_noise_labels_fall_back_to_the_prior_said_as_such(indexes):
    # 80% yes whatever the question: nothing can beat always 'yes' on validation
    a, split, qv = _answerer(_records(120, lambda rng, t: "Y" if rng.random() < 0.8 else "N"), made=indexes)
    report = _fit(a, split, qv)
    assert report["chosen"] == "prior" and "majority" in report["why"]
    assert [r["learner"] for r in report["learners"]] == ["prior", *FAST.learners]  # all compared, on validation
    assert a.yesno.kind == "prior"
    p, _ = a.p_yes_rows(np.flatnonzero(split == "test"), qv)
    assert np.allclose(p, report["prior_yes_share"]) and report["prior_yes_share"] > 0.5  # yes, with the prior
    found = a.answer(a.frame["item_id"][0], "does it come with a water filter")
    assert found.yes_no.answer == "yes" and found.yes_no.model == "prior"
    assert found.yes_no.confidence == pytest.approx(report["prior_yes_share"])


def test_a_learner_that_beats_the_majority_on_validation_is_served(indexes):
    # the answer follows the topic (the filter and the installation: yes; noise and 220 V: no)
    a, split, qv = _answerer(_records(60, lambda rng, t: "YNYN"[t]), made=indexes)
    report = _fit(a, split, qv)
    assert report["chosen"] in FAST.learners and a.yesno.kind == report["chosen"]
    p, y = a.p_yes_rows(np.flatnonzero(split == "test"), qv)
    assert ((p >= 0.5) == y).mean() > 0.95
    volts = a.answer("P000", "will it run on 220 volts")
    assert volts.yes_no.answer == "no" and volts.yes_no.model == report["chosen"] and not volts.yes_no.abstain


def test_the_calibration_bias_is_fitted_on_validation():
    # a model trained where yes and no are even, served where 85% are yes: Platt scaling on
    # validation moves the bias so the mean P(yes) is validation's yes share (not 50%)
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.85).astype(int)
    X = (rng.normal(size=400) + 0.5 * (2 * y - 1)).reshape(-1, 1).astype(np.float32)
    m = YesNoModel().set_answer({"kind": np.array("evidence-lr"), "answer_w": np.array([1.0], np.float32),
                                 "answer_b": np.array([0.0], np.float32), "platt": np.array([1.0, 0.0], np.float32)})
    before = m.p_yes(X)
    assert abs(before.mean() - 0.5) < 0.1 and ((before >= 0.5) == y).mean() < 0.85  # worse than always 'yes'
    after = m.calibrate(X, y).p_yes(X)
    assert after.mean() == pytest.approx(y.mean(), abs=1e-3) and m.weights["platt"][1] > 0.5
    assert ((after >= 0.5) == y).mean() > ((before >= 0.5) == y).mean() + 0.1
    # out of fold: Platt fitted on the other folds, so an uninformative logit cannot look good
    oof = out_of_fold(rng.normal(size=400), y, 5, 0)
    assert ((oof >= 0.5) == y).mean() <= y.mean() + 0.02


def test_evidence_reads_only_the_past_and_never_the_question_itself():
    recs = [{"asin": "A", "question": "is it loud", "answer": "no, quiet", "questionType": "yes/no", "answerType": "N",
             "unixTime": 1_400_000_000},
            {"asin": "A", "question": "is it loud", "answer": "yes, loud", "questionType": "yes/no", "answerType": "Y",
             "unixTime": 1_500_000_000}]
    frame, _ = frame_from_records(recs)
    enc = HashingEncoder()
    qv = enc.encode(frame["question"].to_list())
    ev = Evidence(frame, qv, enc.encode(frame["answer"].to_list()))
    f = dict(zip(EVIDENCE_FEATURES, ev.rows(np.array([0, 1]), frame["question"].to_list(),
                                            frame["item_id"].to_list(), qv).T))
    assert f["product_qa"][0] == 0 and f["product_similar_label"][0] == 0  # the first sees nothing
    assert f["product_similar_label"][1] == pytest.approx(-1.0)  # the second sees the first's 'no', not its own 'yes'
    assert f["neighbour_label"][1] == pytest.approx(-1.0)
    served = dict(zip(EVIDENCE_FEATURES, ev.features(qv[0], "is it loud", "A")))  # served: every stored Q&A
    assert served["product_qa"] == pytest.approx(np.log1p(2))


def test_abstains_under_min_confidence(indexes):
    a, split, qv = _answerer(_records(60, lambda rng, t: "Y" if rng.random() < 0.8 else "N"),
                             YesNoConfig(learners=("evidence-lr",), min_confidence=0.95), indexes)
    _fit(a, split, qv)
    found = a.answer("P000", "is it loud")
    assert found.yes_no.confidence < 0.95 and found.yes_no.abstain


@pytest.mark.parametrize("labels", ["YNYN", "noise"])
def test_saved_answer_models_load_and_answer_the_same(tmp_path, labels):
    a, split, qv = _answerer(_records(60, lambda rng, t: "YNYN"[t] if labels == "YNYN" else
                                      ("Y" if rng.random() < 0.8 else "N")))
    _fit(a, split, qv)
    a.yesno.save(tmp_path / "yesno.npz")
    b = YesNoModel.load(tmp_path / "yesno.npz", FAST)
    assert b.kind == a.yesno.kind
    X = a.evidence.rows(np.arange(20), a.questions, a.sets.items, qv)
    np.testing.assert_allclose(b.p_yes(X), a.yesno.p_yes(X), rtol=1e-6)


def test_a_model_saved_before_there_were_kinds_loads_as_legacy(tmp_path):
    rng = np.random.default_rng(0)
    w = {"type_w": rng.normal(size=5).astype(np.float32), "type_b": np.array([0.1], np.float32),
         "answer_w": rng.normal(size=12).astype(np.float32), "answer_b": np.array([0.2], np.float32),
         "platt": np.array([0.8, 0.3], np.float32)}
    np.savez(tmp_path / "old.npz", **w)
    m = YesNoModel.load(tmp_path / "old.npz", YesNoConfig())
    X = rng.normal(size=(4, 12)).astype(np.float32)
    assert m.kind == "legacy" and m.answers
    np.testing.assert_allclose(m.p_yes(X), 1 / (1 + np.exp(-(0.8 * (X @ w["answer_w"] + 0.2) + 0.3))), rtol=1e-5)
    np.savez(tmp_path / "odd.npz", kind=np.array("transformer"), **w)
    with pytest.raises(ValueError, match="build the answers folder again"):
        YesNoModel.load(tmp_path / "odd.npz", YesNoConfig())


def test_a_folder_whose_evidence_model_lost_its_question_vectors_says_so(synthetic, tmp_path):
    a = synthetic["answerer"]
    assert a.yesno.kind.startswith("evidence") and a.report["yes_no_answer"]["chosen"] == a.yesno.kind
    a.save(tmp_path / "answers")
    (tmp_path / "answers" / "question_vectors.npy").unlink()
    with pytest.raises(ValueError, match="question_vectors.npy is missing"):
        Answerer.load(tmp_path / "answers")


def test_a_learner_worse_than_the_majority_never_blocks_one_that_beats_it():
    # the first benchmark run of this model chose by log-loss first: a learner with the best
    # log-loss but below always 'yes' on accuracy sent it to the prior although another beat both
    def row(name: str, acc: float, ll: float) -> dict:
        return {"learner": name, "out_of_fold": {"accuracy": acc, "log_loss": ll, "brier": 0.2}}

    table = [{**row("prior", 0.69, 0.605), "always_majority_accuracy": 0.708},
             row("legacy", 0.704, 0.5757), row("evidence-lr", 0.728, 0.5766), row("evidence-lgbm", 0.715, 0.610)]
    assert choose_learner(table)["learner"] == "evidence-lr"
    assert [r["eligible"] for r in table[1:]] == [False, True, False]  # lgbm: worse log-loss than the prior
    assert choose_learner([table[0], row("legacy", 0.704, 0.5757)]) is None  # none eligible: the prior


def test_an_answers_folder_from_before_still_loads_and_answers(synthetic, tmp_path):
    # a folder built before this model: yesno.npz without a kind, no question_vectors.npy
    a, frame = synthetic["answerer"], synthetic["frame"]
    a.save(tmp_path / "answers")
    (tmp_path / "answers" / "question_vectors.npy").unlink()
    d = a.answer_vecs.shape[1]
    old = {k: v for k, v in a.yesno.weights.items() if k.startswith("type_")}
    old.update(answer_w=np.r_[np.zeros(2 * d), [3.0, 0, 0, 0]].astype(np.float32), answer_b=np.array([0.0], np.float32),
               platt=np.array([1.0, 0.0], np.float32))  # yes when the top re-ranked answer opens with a yes
    np.savez(tmp_path / "answers" / "yesno.npz", **old)
    b = Answerer.load(tmp_path / "answers", encoder=HashingEncoder())
    try:
        assert b.yesno.kind == "legacy"
        item = frame.filter(frame["answer"] == TOPICS[6][1])["item_id"][0]
        volts = b.answer(item, "will it work on 220 volt outlets")
        assert volts.yes_no.model == "legacy" and volts.yes_no.answer == "no"
    finally:
        b.index.close()
