import numpy as np
import pytest

from shopformer.features.newvisitors import NewVisitorConfig, new_visitor_split
from shopformer.features.sequences import Sequences
from shopformer.models.trending import DAY_S


def timed(rows: list[list[tuple[int, float]]]) -> Sequences:
    items = [i for row in rows for i, _ in row]
    days = [d for row in rows for _, d in row]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    return Sequences(offsets, np.array(items, dtype=np.int64), np.array(days, dtype=np.float64) * DAY_S)


def test_temporal_visitors_are_users_who_first_arrive_after_the_cutoff() -> None:
    rows = [
        [(1, 0.0), (2, 1.0), (3, 9.0)],  # returning customer: trains before the cutoff only
        [(4, 2.0), (5, 3.0)],  # old customer
        [(6, 6.0), (7, 6.5), (8, 7.0)],  # new visitor
        [(5, 8.0), (6, 8.5)],  # new visitor
        [(9, 9.5)],  # new visitor with one event: only step 0
        [(1, 100.0), (2, 101.0)],  # arrives after the horizon: not scored
    ]
    # 14 event times; the 0.25 quantile falls between day 1 and day 2 -> cutoff ~ 1.25 d
    cfg = NewVisitorConfig(steps=2, cutoff_quantile=0.25, horizon_days=0.0)
    split = new_visitor_split(timed(rows), cfg)
    assert split.protocol == "temporal"
    assert split.cutoff == pytest.approx(np.quantile([0, 1, 9, 2, 3, 6, 6.5, 7, 8, 8.5, 9.5, 100, 101], 0.25) * DAY_S)


def test_cases_read_the_first_k_events_and_target_the_next() -> None:
    rows = [
        [(1, 0.0), (2, 1.0), (3, 20.0)],
        [(4, 0.5), (5, 1.5)],
        [(6, 12.0), (7, 12.5), (8, 13.0)],
        [(5, 14.0), (6, 14.5)],
        [(9, 15.0)],
        [(2, 200.0), (3, 201.0)],
    ]
    cfg = NewVisitorConfig(steps=2, cutoff_quantile=0.3, horizon_days=30.0, seed=0)
    split = new_visitor_split(timed(rows), cfg)
    cutoff_day = split.cutoff / DAY_S
    assert 1.5 < cutoff_day < 12.0
    # training: every event before the cutoff, visitors' rows empty
    assert split.train.lengths.tolist() == [2, 2, 0, 0, 0, 0]
    visitors = sorted(np.concatenate([split.valid[0].users, split.test[0].users]).tolist())
    assert visitors == [2, 3, 4]  # user 5 arrives after the 30-day horizon
    step0 = {int(u): (h, t) for part in (split.valid, split.test) for u, h, t in
             zip(part[0].users, [part[0].history.row(i).tolist() for i in range(len(part[0]))],
                 [part[0].targets.row(i).tolist() for i in range(len(part[0]))])}
    assert step0 == {2: ([], [6]), 3: ([], [5]), 4: ([], [9])}
    step1 = {int(u): (part[1].history.row(i).tolist(), part[1].targets.row(i).tolist())
             for part in (split.valid, split.test) for i, u in enumerate(part[1].users)}
    assert step1 == {2: ([6], [7]), 3: ([5], [6])}  # user 4 has no second event
    assert not set(split.valid[0].users) & set(split.test[0].users)


def test_untimed_data_holds_out_random_users() -> None:
    seqs = Sequences.from_lists([[1, 2, 3]] * 10 + [[4, 5]] * 10)
    split = new_visitor_split(seqs, NewVisitorConfig(fraction=0.2, steps=3))
    assert split.protocol == "random_users" and split.cutoff is None
    held = np.concatenate([split.valid[0].users, split.test[0].users])
    assert len(held) == 4
    assert (split.train.lengths[held] == 0).all() and (np.delete(split.train.lengths, held) > 0).all()
    assert [len(split.valid[k]) + len(split.test[k]) for k in range(3)] == [
        4, 4, int((seqs.lengths[held] > 2).sum())]


def test_bad_settings_are_named() -> None:
    seqs = Sequences.from_lists([[1, 2]] * 4)
    with pytest.raises(ValueError, match="steps"):
        new_visitor_split(seqs, NewVisitorConfig(steps=0))
    with pytest.raises(ValueError, match="fraction"):
        new_visitor_split(seqs, NewVisitorConfig(fraction=1.5))
