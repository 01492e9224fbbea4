import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out, temporal, temporal_at


def test_leave_one_out():
    s = Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9]])
    split = leave_one_out(s)
    assert split.train.row(0).tolist() == [1, 2]
    assert split.train.row(1).tolist() == [5, 6]  # too short to evaluate: all training
    assert split.valid.users.tolist() == [0, 2]
    assert split.valid.history.row(0).tolist() == [1, 2]
    assert split.valid.targets.row(0).tolist() == [3]
    assert split.test.history.row(1).tolist() == [7, 8]
    assert split.test.targets.row(1).tolist() == [9]


def test_temporal_cuts_every_user_at_the_same_time():
    items = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 9]]
    times = [[1, 2, 3, 9, 10], [4, 10], [4, 6, 10]]
    s = Sequences.from_lists(items)
    s.timestamps = np.array([t for row in times for t in row], dtype=float)
    split = temporal_at(s, 5.0, 9.0)
    assert split.train.row(0).tolist() == [1, 2, 3]
    assert split.train.row(1).tolist() == [6]
    # validation window [5, 9): only user 2 has an event there (9 at time 6)
    assert split.valid.users.tolist() == [2]
    assert split.valid.history.row(0).tolist() == [8]
    assert split.valid.targets.row(0).tolist() == [9]
    # test window [9, inf): users 0, 1, 2; history = everything before 9
    assert split.test.users.tolist() == [0, 1, 2]
    assert split.test.history.row(0).tolist() == [1, 2, 3]
    assert split.test.targets.row(0).tolist() == [4, 5]
    assert split.test.targets.row(2).tolist() == [9]  # distinct items of the window


def test_temporal_needs_timestamps():
    with pytest.raises(ValueError, match="timestamp"):
        temporal(Sequences.from_lists([[1, 2]]))


def test_temporal_fractions_pick_quantile_cuts():
    s = Sequences.from_lists([[1, 2, 3, 4], [5, 6, 7, 8]])
    s.timestamps = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    split = temporal(s, valid_fraction=0.25, test_fraction=0.25)
    # cuts at the 50% and 75% quantiles: 4.5 and 6.25
    assert split.train.row(0).tolist() == [1, 2, 3, 4] and split.train.row(1).tolist() == []
    # user 1 has no event before 4.5, so it is a cold-start visitor, not a validation case
    assert split.valid.users.tolist() == []
    assert split.test.users.tolist() == [1]
    assert split.test.history.row(0).tolist() == [5, 6]
    assert split.test.targets.row(0).tolist() == [7, 8]
