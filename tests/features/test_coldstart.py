import numpy as np
import pytest

from shopformer.features.coldstart import ColdStartConfig, cold_start_split
from shopformer.features.sequences import Sequences


def test_keep_drops_elements_and_keeps_rows():
    s = Sequences.from_lists([[1, 2, 3], [4], [5, 6]])
    s.timestamps = np.arange(6, dtype=float)
    k = s.keep(np.array([True, False, True, False, True, True]))
    assert [k.row(u).tolist() for u in range(3)] == [[1, 3], [], [5, 6]]
    assert k.timestamps.tolist() == [0.0, 2.0, 4.0, 5.0]


def _shop(n_users=300, n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    return Sequences.from_lists([rng.integers(1, n_items + 1, size=rng.integers(3, 9)).tolist()
                                 for _ in range(n_users)])


def test_held_out_products_never_reach_training_or_histories():
    seqs = _shop()
    split = cold_start_split(seqs, 50, ColdStartConfig(fraction=0.2, seed=1))
    cold = set(split.cold_items.tolist())
    assert len(cold) == 10  # 20% of the 50 products that occur
    assert not cold & set(split.train.items.tolist())
    assert len(split.valid) == len(split.valid_warm) + len(split.valid_cold)
    for cases in (split.valid_warm, split.valid_cold, split.test_warm, split.test_cold):
        assert not cold & set(cases.history.items.tolist())
        assert (cases.history.lengths > 0).all()
    assert set(split.test_cold.targets.items.tolist()) <= cold
    assert not set(split.test_warm.targets.items.tolist()) & cold


def test_cases_keep_the_leave_one_out_targets_and_histories():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5, 1, 6, 2]])
    split = cold_start_split(seqs, 6, ColdStartConfig(fraction=0.2, seed=3))
    cold = split.cold_items.tolist()
    # every user's last item lands in exactly one of test_warm / test_cold
    users = sorted(split.test_warm.users.tolist() + split.test_cold.users.tolist())
    emptied = [u for u in (0, 1) if all(i in cold for i in seqs.row(u)[:-1])]
    assert users == [u for u in (0, 1) if u not in emptied]
    for cases in (split.test_warm, split.test_cold):
        for j, u in enumerate(cases.users):
            assert cases.targets.row(j).tolist() == [seqs.row(u)[-1]]
            assert cases.history.row(j).tolist() == [i for i in seqs.row(u)[:-1] if i not in cold]


def test_same_seed_same_products_and_bad_fraction_is_an_error():
    seqs = _shop()
    a = cold_start_split(seqs, 50, ColdStartConfig(seed=7)).cold_items
    b = cold_start_split(seqs, 50, ColdStartConfig(seed=7)).cold_items
    assert a.tolist() == b.tolist()
    with pytest.raises(ValueError, match="fraction"):
        cold_start_split(seqs, 50, ColdStartConfig(fraction=1.5))
