"""Prefix-reuse occlusion gives the same user vectors as scoring every occluded history."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from shopformer.explain.attribution import OcclusionConfig, occlusion_batch
from shopformer.features.sequences import Sequences
from shopformer.models.occlusion import occlusion_user_vectors
from shopformer.models.sasrec import SASRec, SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig

N = 40


def random_model(pre_norm: bool, types: bool = False, gaps: int = 0, layers: int = 2) -> SASRecRecommender:
    torch.manual_seed(0)
    arch = SASRecConfig(n_items=N, max_len=8, d_model=16, n_layers=layers, n_heads=2, pre_norm=pre_norm,
                        event_types=types, time_gap_buckets=gaps)
    model = SASRecRecommender(TransformerConfig(arch=arch))
    model.module = SASRec(arch).eval()
    with torch.no_grad():  # weights large enough that every event matters
        for p in model.module.parameters():
            p.normal_(0, 0.3)
    return model


def history(length: int, seed: int = 1) -> Sequences:
    rng = np.random.default_rng(seed)
    return Sequences(np.array([0, length]), rng.integers(1, N + 1, length),
                     np.cumsum(rng.integers(1, 10**5, length)).astype(np.float64),
                     rng.integers(0, 3, length).astype(np.int8))


@pytest.mark.parametrize("pre_norm", [True, False])
@pytest.mark.parametrize("length", [1, 2, 5, 8, 9, 13])  # around max_len = 8
@pytest.mark.parametrize("max_events", [None, 3, 11])  # 11 > max_len: old events outside the window
def test_equals_scoring_each_occluded_history(pre_norm, length, max_events):
    model = random_model(pre_norm)
    h = history(length)
    batch, positions = occlusion_batch(h, 0, OcclusionConfig(max_events=max_events))
    expected = model.user_vectors(batch)  # (E + 1, D)
    got = occlusion_user_vectors(model, h, positions)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the whole history's vector handed in (as serving has it) gives the same rows
    given = occlusion_user_vectors(model, h, positions, full=model.user_vectors(h)[0])
    torch.testing.assert_close(given, expected, rtol=1e-4, atol=1e-5)
    if length > 1:  # the check can fail: removing an event changes the vector
        assert not torch.allclose(expected[0], expected[-1])


@pytest.mark.parametrize("layers", [1, 3])
def test_equals_with_event_types_time_gaps_and_other_depths(layers):
    model = random_model(True, types=True, gaps=6, layers=layers)
    for length in (4, 8, 12):
        h = history(length, seed=length)
        batch, positions = occlusion_batch(h, 0, OcclusionConfig(max_events=None))
        torch.testing.assert_close(occlusion_user_vectors(model, h, positions), model.user_vectors(batch),
                                   rtol=1e-4, atol=1e-5)


def test_refuses_a_bidirectional_model():
    model = random_model(True)
    model.config = replace(model.config, arch=replace(model.config.arch, causal=False))
    model.module = SASRec(model.config.arch).eval()
    with pytest.raises(ValueError, match="causal"):
        occlusion_user_vectors(model, history(5), np.arange(5))


def test_bfloat16_occlusion_stays_close_to_float32():
    from shopformer.explain.attribution import attribute

    model = random_model(True)
    h = history(12, seed=3)
    items = np.arange(1, N + 1)
    exact = attribute(model, h, items, OcclusionConfig(max_events=None))
    fast = attribute(model, h, items, OcclusionConfig(max_events=None, precision="bfloat16"))
    assert fast.values.dtype == np.float32 and fast.values.shape == exact.values.shape
    scale = np.abs(exact.values).max()
    assert np.abs(fast.values - exact.values).max() < 0.05 * scale  # bfloat16: ~3 significant digits
    assert not np.array_equal(fast.values, exact.values)  # it did run in lower precision
    # the event each item owes most to is mostly the same
    agree = (fast.values.argmax(axis=0) == exact.values.argmax(axis=0)).mean()
    assert agree >= 0.8


def test_int8_occlusion_stays_close_and_keeps_the_given_full_row():
    from shopformer.explain.attribution import attribute

    model = random_model(True)
    h = history(12, seed=3)
    items = np.arange(1, N + 1)
    full = model.user_vectors(h)[0].numpy()
    exact = attribute(model, h, items, OcclusionConfig(max_events=None), user_vector=full)
    fast = attribute(model, h, items, OcclusionConfig(max_events=None, precision="int8"), user_vector=full)
    np.testing.assert_allclose(fast.full, exact.full, rtol=1e-6)  # the served score, untouched
    scale = np.abs(exact.values).max()
    assert scale > 0.1 and np.abs(fast.values - exact.values).max() < 0.1 * scale
    assert not np.array_equal(fast.values, exact.values)  # it did run the int8 copy
    with pytest.raises(ValueError, match="precision must be one of"):
        OcclusionConfig(precision="int4")


def test_rows_split_into_attention_groups_give_the_same_vectors(monkeypatch):
    import shopformer.models.occlusion as occlusion

    model = random_model(True, types=True, gaps=6)
    h = history(13, seed=5)
    batch, positions = occlusion_batch(h, 0, OcclusionConfig(max_events=None))
    one_group = occlusion_user_vectors(model, h, positions)
    monkeypatch.setattr(occlusion, "GROUP_TOKENS", 3)  # several groups, and rows longer than a group
    split = occlusion_user_vectors(model, h, positions, full=model.user_vectors(h)[0])
    torch.testing.assert_close(split, model.user_vectors(batch), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(split, one_group, rtol=1e-4, atol=1e-5)
