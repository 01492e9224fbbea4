"""Calibration: the output ID scale and text weight chosen on validation after fit."""

import numpy as np
import polars as pl
import pytest
import torch

from shopformer.evaluate.protocol import EvalConfig, evaluate
from shopformer.features.content import ContentConfig, build_content
from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.features.vocab import Vocabulary
from shopformer.models.calibration import Calibration, CalibrationConfig, calibrate, recent_text_query
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.loop import TrainConfig

N, V = 30, 6


def test_recent_text_query_is_the_mean_of_the_latest_unit_vectors():
    unit = np.random.default_rng(0).normal(size=(N + 1, V)).astype(np.float32)
    h = Sequences.from_lists([[3, 4, 5, 6], [7], []])
    q = recent_text_query(h, unit, last=3)
    np.testing.assert_allclose(q[0], unit[[4, 5, 6]].mean(0), rtol=1e-6)
    np.testing.assert_allclose(q[1], unit[7], rtol=1e-6)
    assert not q[2].any()


def _data(seed: int = 1):
    """Items 1..10 follow each other in a cycle; items 26..30 are never in training."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(120):
        start = int(rng.integers(1, 11))
        rows.append([(start + k - 1) % 10 + 1 for k in range(7)])
    cases = EvalCases(np.arange(40), Sequences.from_lists([r[:-1] for r in rows[:40]]),
                      Sequences.from_lists([[r[-1]] for r in rows[:40]]))
    return Sequences.from_lists(rows), cases


@pytest.fixture(scope="module")
def content():
    vocab = Vocabulary([str(i) for i in range(1, N + 1)])
    vectors = np.random.default_rng(3).normal(size=(N, V)).astype(np.float32)
    return build_content(pl.DataFrame({"item_id": vocab.ids}), vocab, ContentConfig(fields=()), vectors)


def _model(content, calibration: CalibrationConfig, text_channel: bool = False) -> SASRecRecommender:
    torch.set_num_threads(1)
    cfg = TransformerConfig(arch=SASRecConfig(d_model=8, n_heads=1, max_len=8, id_dropout=0.5,
                                              text_channel=text_channel),
                            train=TrainConfig(epochs=3, batch_size=16, warmup_steps=2), calibration=calibration)
    train, valid = _data()
    return SASRecRecommender(cfg, content).fit(train, N, valid)


def test_calibrated_model_scores_what_the_grid_measured(content, tmp_path):
    grid = CalibrationConfig(id_scales=(1.0, 0.5, 0.0), text_weights=(0.0, 3.0), text_histories=(2, 20))
    model = _model(content, grid)
    cal = model.calibration
    assert isinstance(cal, Calibration) and len(cal.grid) == 9  # 3 scales x (no channel, weight 3 x 2 histories)
    assert {(g["text_weight"], g["text_history"]) for g in cal.grid} == {(0.0, 20), (3.0, 2), (3.0, 20)}
    best = max(g["valid_NDCG@10"] for g in cal.grid)
    assert cal.valid_ndcg == best
    assert (cal.id_scale, cal.text_weight) in {(g["id_scale"], g["text_weight"]) for g in cal.grid}
    _, valid = _data()
    served = evaluate(model, valid, N, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert served == pytest.approx(cal.valid_ndcg, abs=1e-6)  # the served model is the one measured
    assert model.config.arch.id_output_scale == cal.id_scale
    assert model.config.arch.text_channel == (cal.text_weight > 0)
    assert model.config.arch.text_history == cal.text_history
    hist = Sequences.from_lists([[3, 4, 5]])
    model.save(tmp_path)
    np.testing.assert_allclose(SASRecRecommender.load(tmp_path).score(hist), model.score(hist), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("id_scale, text_weight, text_history", [(0.5, 0.0, 20), (1.0, 4.0, 2), (0.3, 2.0, 20)])
def test_each_candidate_matches_the_model_it_describes(content, id_scale, text_weight, text_history):
    model = _model(content, CalibrationConfig(enabled=False))
    _, valid = _data()
    cal = calibrate(model, valid, CalibrationConfig(id_scales=(id_scale,), text_weights=(text_weight,),
                                                    text_histories=(text_history,)))
    chosen = [g for g in cal.grid if (g["text_weight"], g["text_history"]) == (text_weight, text_history)]
    cal = Calibration(id_scale, text_weight, text_history, chosen[0]["valid_NDCG@10"], tuple(chosen))
    model.apply_calibration(cal)
    served = evaluate(model, valid, N, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert served == pytest.approx(cal.valid_ndcg, abs=1e-6)
    # the scale shrinks only the known items' ID part: an unsold item's score is unchanged
    assert not model.module.known[N]
    table = model.module.item_table(model.item_representations())
    reps = model.item_representations()
    torch.testing.assert_close(table[N, :8], reps[N])
    torch.testing.assert_close(table[1, :8], reps[1] - (1 - id_scale) * model.module.item_emb.weight[1])


def test_a_trained_text_weight_is_a_candidate_and_can_be_kept(content):
    model = _model(content, CalibrationConfig(enabled=False), text_channel=True)
    learned = model.module.text_weight.item()
    _, valid = _data()
    cal = calibrate(model, valid, CalibrationConfig(id_scales=(1.0,), text_weights=(), text_histories=()))
    assert [g["text_weight"] for g in cal.grid] == [0.0, pytest.approx(learned)]  # no channel, or as trained
    kept = next(g for g in cal.grid if g["text_weight"] == pytest.approx(learned))
    before = model.score(valid.history)
    model.apply_calibration(Calibration(1.0, kept["text_weight"], kept["text_history"], kept["valid_NDCG@10"], (kept,)))
    np.testing.assert_allclose(model.score(valid.history), before, rtol=1e-5, atol=1e-5)


def test_no_calibration_without_content_or_validation(content):
    torch.set_num_threads(1)
    train, valid = _data()
    cfg = TransformerConfig(arch=SASRecConfig(d_model=8, n_heads=1, max_len=8),
                            train=TrainConfig(epochs=1, batch_size=16, warmup_steps=2))
    assert SASRecRecommender(cfg).fit(train, N, valid).calibration is None
    assert SASRecRecommender(cfg, content).fit(train, N).calibration is None


def test_calibration_is_set_from_the_command_line():
    from shopformer.artifact import make_model

    model = make_model("sasrec", {"calibration.id_scales": "1,0.5", "calibration.text_histories": "3, 7",
                                  "calibration.enabled": "false"})
    assert model.config.calibration == CalibrationConfig(enabled=False, id_scales=(1.0, 0.5), text_histories=(3, 7))
    with pytest.raises(ValueError, match="calibration.id_scales"):
        make_model("sasrec", {"calibration.id_scales": "1,x"})


@pytest.fixture(scope="module")
def attributes():
    """Brands only (no vectors): items i and i + 5 share a brand; a few have a category."""
    vocab = Vocabulary([str(i) for i in range(1, N + 1)])
    products = pl.DataFrame({"item_id": vocab.ids, "brand": [f"b{i % 5}" for i in range(1, N + 1)],
                             "categories": [["c1"] if i % 3 == 0 else [] for i in range(1, N + 1)]})
    return build_content(products, vocab, ContentConfig(fields=("brand", "categories"), price_bands=0))


def test_a_catalog_without_vectors_gets_a_channel_on_its_attribute_tokens(attributes, tmp_path):
    from shopformer.models.content_knn import content_matrix

    model = _model(attributes, CalibrationConfig(enabled=False))
    _, valid = _data()
    cal = calibrate(model, valid, CalibrationConfig(id_scales=(1.0, 0.5), text_weights=(3.0,), text_histories=(2,)))
    assert {(g["text_weight"], g["text_history"]) for g in cal.grid} == {(0.0, 20), (3.0, 2), (3.0, 20)}
    chosen = next(g for g in cal.grid if g["text_weight"] == 3.0 and g["id_scale"] == 0.5)
    model.apply_calibration(Calibration(0.5, 3.0, 2, chosen["valid_NDCG@10"], (chosen,), "tokens"))
    assert model.config.arch.channel_tokens and model.config.arch.text_channel
    served = evaluate(model, valid, N, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert served == pytest.approx(chosen["valid_NDCG@10"], abs=1e-6)
    # the channel compares exactly what content kNN compares (IDF-weighted unit token rows)
    knn_rows = content_matrix(attributes).toarray()
    np.testing.assert_allclose(model.module.unit_vectors[: N + 1].numpy(), knn_rows, atol=1e-6)
    hist = Sequences.from_lists([[3, 4, 5]])
    model.save(tmp_path)
    np.testing.assert_allclose(SASRecRecommender.load(tmp_path).score(hist), model.score(hist), rtol=1e-5, atol=1e-6)
    # a new product of item 3's brand gets item 3's channel row (the IDF kept from training)
    grown = model.with_new_items(attributes.tokens[[3]])
    torch.testing.assert_close(grown.module.unit_vectors[N + 1], model.module.unit_vectors[3])
    np.testing.assert_allclose(grown.score(hist)[:, : N + 1], model.score(hist), rtol=1e-5, atol=1e-6)


def test_fit_with_the_text_channel_and_no_vectors_uses_the_tokens(attributes):
    model = _model(attributes, CalibrationConfig(enabled=False), text_channel=True)
    assert model.config.arch.channel_tokens
    assert model.module.unit_vectors.shape == (N + 2, attributes.n_tokens)
    assert model.module.unit_vectors[1] @ model.module.unit_vectors[11] > 0.99  # same brand, no category


def test_the_grid_ndcg_is_evaluates_ndcg():
    from shopformer.models.calibration import _ndcg_sum

    rng = np.random.default_rng(5)
    hist = Sequences.from_lists([list(rng.choice(np.arange(1, N + 1), 4, replace=False)) for _ in range(50)])
    targets = Sequences.from_lists([list(rng.choice(np.arange(1, N + 1), int(rng.integers(1, 4)), replace=False))
                                    for _ in range(50)])
    cases = EvalCases(np.arange(50), hist, targets)
    scores = rng.normal(size=(50, N + 1)).astype(np.float32)
    scores[:, 0] = -np.inf
    scores[:, 7] = scores[:, 8]  # ties break as evaluate breaks them

    class Fixed:
        def score(self, history):
            return scores.copy()

    expected = evaluate(Fixed(), cases, N, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert _ndcg_sum(scores.copy(), cases) / 50 == pytest.approx(expected, abs=1e-9)
    small = scores[:, :7].copy()  # a catalog of 6 items, fewer than the cutoff
    small_cases = EvalCases(np.arange(50), Sequences.from_lists([[1]] * 50), Sequences.from_lists([[2]] * 50))
    scores = small
    expected = evaluate(Fixed(), small_cases, 6, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert _ndcg_sum(small.copy(), small_cases) / 50 == pytest.approx(expected, abs=1e-9)


def test_new_item_bias_is_the_best_for_new_products_within_the_warm_cost():
    from shopformer.models.calibration import _choose_bias

    known = np.ones(N + 1, dtype=bool)
    known[26:] = False  # items 26..30: no training interactions
    rng = np.random.default_rng(2)
    hist = Sequences.from_lists([[1, 2]] * 40)
    targets = Sequences.from_lists([[int(rng.integers(26, 31))] if u < 10 else [int(rng.integers(3, 26))]
                                    for u in range(40)])
    valid = EvalCases(np.arange(40), hist, targets)
    scores = rng.normal(size=(40, N + 1)).astype(np.float32)
    scores[np.arange(40), targets.items] += 1.5  # the model knows something
    scores[:, 26:] -= 2.0  # and ranks new products low

    def pick(cost):
        return _choose_bias(known, valid, CalibrationConfig(new_item_warm_cost=cost), lambda rows: scores[rows])

    bias, grid, ndcg = pick(0.03)
    assert grid[0]["new_item_bias"] == 0.0 and len(grid) == 1 + len(CalibrationConfig().new_item_biases)
    base_warm = grid[0]["valid_other_NDCG@10"]
    allowed = [g for g in grid if g["valid_other_NDCG@10"] >= 0.97 * base_warm - 1e-6]
    chosen = next(g for g in grid if g["new_item_bias"] == bias)
    assert chosen in allowed and chosen["valid_new_NDCG@10"] == max(g["valid_new_NDCG@10"] for g in allowed)
    assert chosen["valid_new_NDCG@10"] > grid[0]["valid_new_NDCG@10"]  # the bias does place new products
    assert ndcg == chosen["valid_NDCG@10"]
    overall, grid_all, _ = pick(None)
    assert overall == max(grid_all, key=lambda g: g["valid_NDCG@10"])["new_item_bias"]
    assert _choose_bias(np.ones(N + 1, bool), valid, CalibrationConfig(), lambda rows: scores[rows])[1] == ()


def test_a_served_new_item_bias_scores_what_was_measured_and_leaves_similar_items(content, tmp_path):
    model = _model(content, CalibrationConfig(enabled=False))
    train, valid = _data()
    # and 10 validation cases whose target (27) was never in training
    rows = [valid.history.row(u).tolist() for u in range(len(valid))] + [[3, 4, 5]] * 10
    targets = [valid.targets.row(u).tolist() for u in range(len(valid))] + [[27]] * 10
    both = EvalCases(np.arange(len(rows)), Sequences.from_lists(rows), Sequences.from_lists(targets))
    similar_before = model.similar_items(np.array([3, 27]), 5)
    cal = calibrate(model, both, CalibrationConfig(id_scales=(1.0,), text_weights=(), new_item_warm_cost=None,
                                                   new_item_biases=(1.0, 4.0, 16.0)))
    assert len(cal.bias_grid) == 4
    forced = next(g for g in cal.bias_grid if g["spread_multiple"] == 4.0)
    model.apply_calibration(Calibration(1.0, 0.0, cal.text_history, forced["valid_NDCG@10"], cal.grid, "",
                                        forced["new_item_bias"], cal.bias_grid))
    served = evaluate(model, both, N, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"]
    assert served == pytest.approx(forced["valid_NDCG@10"], abs=1e-6)
    assert model.output_table().shape[1] == 8 + 1  # D + the bias column
    scores = model.score(Sequences.from_lists([[3, 4, 5]]))[0]
    assert forced["new_item_bias"] > 0 and scores[27] > scores[6]  # pushed above known items
    for a, b in zip(model.similar_items(np.array([3, 27]), 5), similar_before):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    model.save(tmp_path)
    np.testing.assert_allclose(SASRecRecommender.load(tmp_path).score(valid.history), model.score(valid.history),
                               rtol=1e-5, atol=1e-5)


def _sorted_ndcg(scores: np.ndarray, cases: EvalCases) -> np.ndarray:
    """NDCG@10 per case as calibration computed it before it counted: sort, then match."""
    from shopformer.evaluate import metrics
    from shopformer.retrieve.exact import mask_items, top_k

    mask_items(scores, cases.history)
    idx, top = top_k(scores, 10)
    idx[np.isneginf(top)] = 0
    idx = np.pad(idx, ((0, 0), (0, 10 - idx.shape[1])))
    t = cases.targets
    hits = np.zeros(idx.shape, dtype=bool)
    for u in range(len(t)):
        hits[u] = np.isin(idx[u], t.row(u)) & (idx[u] > 0)
    return metrics.ndcg(hits, t.lengths, 10)


@pytest.mark.parametrize("head, entries", [(1024, 200_000), (4, 7), (1, 40)])  # the first columns counted first
def test_counted_places_give_the_sorted_ndcg_exactly(monkeypatch, head, entries):
    from shopformer.models import calibration as module
    from shopformer.models.calibration import _ndcg

    monkeypatch.setattr(module, "_HEAD", head)
    monkeypatch.setattr(module, "_BLOCK_ENTRIES", entries)
    rng = np.random.default_rng(11)
    for trial in range(60):
        n, b = int(rng.integers(3, 40)), int(rng.integers(1, 50))
        hist = Sequences.from_lists([list(rng.integers(0, n + 1, int(rng.integers(0, 6)))) for _ in range(b)])
        # several targets, repeated ones, none, targets in the history
        targets = Sequences.from_lists([list(rng.integers(1, n + 1, int(rng.integers(trial % 2, 4))))
                                        for _ in range(b)])
        cases = EvalCases(np.arange(b), hist, targets)
        if trial % 3 == 0:  # many ties
            scores = rng.integers(-3, 4, size=(b, n + 1)).astype(np.float32)
        else:
            scores = rng.normal(size=(b, n + 1)).astype(np.float64 if trial % 3 == 1 else np.float32)
        scores[:, 2] = -np.inf if trial % 5 == 0 else scores[:, 2]
        expected = _sorted_ndcg(scores.copy(), cases)
        assert expected.any() or trial % 3  # the cases do hit
        np.testing.assert_array_equal(_ndcg(scores.copy(), cases), expected)


@pytest.mark.parametrize("catalog", ["vectors", "tokens"])
def test_the_grid_is_what_sorting_the_whole_score_matrix_gave(content, attributes, monkeypatch, catalog):
    """Old against new: the grid as calibration computed it before (the whole score
    matrix of a chunk per candidate, sorted; the channel as one dense product), to the
    last digit, with parts, blocks and chunks small enough to split the 50 cases and
    the catalog's columns."""
    from shopformer.models import calibration as module

    model = _model(content if catalog == "vectors" else attributes, CalibrationConfig(enabled=False))
    train, valid = _data()
    rows = [valid.history.row(u).tolist() for u in range(len(valid))] + [[3, 4, 5]] * 10
    targets = [valid.targets.row(u).tolist() for u in range(len(valid))] + [[27]] * 10  # new-product cases
    both = EvalCases(np.arange(len(rows)), Sequences.from_lists(rows), Sequences.from_lists(targets))
    config = CalibrationConfig(id_scales=(1.0, 0.5), text_weights=(0.0, 1.0, 4.0), text_histories=(2, 5),
                               new_item_biases=(0.5, 2.0))
    # and the channel multiplied as sparse rows, as on a large catalog's tokens
    for name, value in (("_PART", 8), ("_HEAD", 5), ("_BLOCK_ENTRIES", 60), ("_CHUNK", 16), ("_SPARSE_SHARE", 1.0)):
        monkeypatch.setattr(module, name, value)
    counted = calibrate(model, both, config)

    def sorted_whole(base, shift, cases):
        return _sorted_ndcg(base.copy() if shift is None else base + shift, cases)

    def dense(unit):
        return lambda query: query @ np.ascontiguousarray(unit.T)

    monkeypatch.setattr(module, "_case_ndcg", sorted_whole)
    monkeypatch.setattr(module, "_channel_product", dense)
    monkeypatch.setattr(module, "_PART", 16)  # the chunk, as before
    reference = calibrate(model, both, config)
    assert counted == reference  # the grids, the choices and the bias grid, every value equal
    assert len(counted.grid) == 2 * (1 + 2 * 3)  # 2 scales x (no channel, 2 weights x histories 2, 5, 20)
    assert len(counted.bias_grid) == 3 and counted.cases == 50
    assert len({g["valid_NDCG@10"] for g in counted.grid}) > 2  # the candidates differ


def test_a_sample_of_the_cases_is_seeded_and_measured_as_such(content):
    from shopformer.models.calibration import _sample

    _, valid = _data()
    sample = _sample(valid, 25, seed=4)
    assert len(sample) == 25 and len(set(sample.users)) == 25 and np.all(np.diff(sample.users) > 0)
    assert np.array_equal(_sample(valid, 25, seed=4).users, sample.users)
    assert not np.array_equal(_sample(valid, 25, seed=5).users, sample.users)
    assert _sample(valid, 40, seed=4) is valid and _sample(valid, None, seed=4) is valid
    u = int(sample.users[3])  # each case keeps its own history and target
    assert sample.history.row(3).tolist() == valid.history.row(u).tolist()
    assert sample.targets.row(3).tolist() == valid.targets.row(u).tolist()

    model = _model(content, CalibrationConfig(enabled=False))
    grid = dict(id_scales=(1.0, 0.5), text_weights=(2.0,), text_histories=(2,))
    on_sample = calibrate(model, valid, CalibrationConfig(**grid, max_cases=25, sample_seed=4))
    assert on_sample.cases == 25
    assert on_sample == calibrate(model, sample, CalibrationConfig(**grid))
    assert calibrate(model, valid, CalibrationConfig(**grid, max_cases=100)).cases == 40
    with pytest.raises(ValueError, match="max_cases"):
        CalibrationConfig(max_cases=0)
