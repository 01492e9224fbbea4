import numpy as np

from shopformer.answers.adapter import AdapterConfig, adapt, fit_adapter
from shopformer.answers.protocol import expected_rank_metrics


def _mrr(q, groups, answers):
    return np.mean([expected_rank_metrics(answers[g] @ q[r], 0)[0] for r, g in enumerate(groups)])


def test_the_adapter_learns_a_map_that_plain_cosine_misses():
    rng = np.random.default_rng(0)
    d, n = 8, 500
    answers = rng.normal(size=(n, d)).astype(np.float32)
    answers /= np.linalg.norm(answers, axis=1, keepdims=True)
    perm = rng.permutation(d)  # questions are their answers with the dimensions shuffled, plus noise
    questions = answers[:, perm] + 0.1 * rng.normal(size=(n, d)).astype(np.float32)
    questions /= np.linalg.norm(questions, axis=1, keepdims=True)
    groups = [np.r_[i, rng.choice(np.delete(np.arange(n), i), 5, replace=False)] for i in range(n)]
    tr, va = np.arange(0, 400), np.arange(400, n)
    delta, report = fit_adapter(AdapterConfig(lr=3e-2, max_epochs=15, batch=64, patience=3), questions[tr], [groups[i] for i in tr],
                                questions[va], [groups[i] for i in va], answers)
    assert delta is not None and report["used"]
    before = _mrr(questions[va], [groups[i] for i in va], answers)
    after = _mrr(adapt(questions[va], delta), [groups[i] for i in va], answers)
    assert before < 0.6 and after > 0.9, (before, after)  # chance: 0.41 with 6 candidates
    assert report["best_valid_mrr"] == max(e["valid_mrr"] for e in report["epochs"])


def test_no_adapter_is_plain_minilm():
    q = np.eye(3, dtype=np.float32)
    assert adapt(q, None) is q
    np.testing.assert_allclose(adapt(q, np.zeros((3, 3), np.float32)), q)
