import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.train.batches import build_windows, bucketed_batches, cloze_mask, trim_padding


def test_windows_last_and_left_padded():
    s = Sequences.from_lists([[1, 2, 3, 4, 5], [6], []])
    w = build_windows(s, 3).items
    assert w.tolist() == [[3, 4, 5], [0, 0, 6], [0, 0, 0]]


def test_random_windows_stay_inside_each_row():
    s = Sequences.from_lists([list(range(1, 11)), [7, 8]])
    rng = np.random.default_rng(0)
    seen_ends = set()
    for _ in range(50):
        w = build_windows(s, 4, rng).items
        row = w[0].tolist()
        assert row == list(range(row[0], row[0] + 4))  # contiguous slice of 1..10
        seen_ends.add(row[-1])
        assert w[1].tolist() == [0, 0, 7, 8]
    assert seen_ends == set(range(4, 11))  # every end position gets drawn


def test_trim_padding_keeps_the_longest_row():
    b = np.array([[0, 0, 0, 5], [0, 0, 3, 4]])
    assert trim_padding(b).tolist() == [[0, 5], [3, 4]]


def test_bucketed_batches_cover_every_row_once():
    lengths = np.random.default_rng(1).integers(1, 50, size=1000)
    batches = bucketed_batches(lengths, 32, np.random.default_rng(2), pool=4)
    allrows = np.concatenate(batches)
    assert sorted(allrows.tolist()) == list(range(1000))
    # within a pool, batches are length-sorted, so spread inside a batch is small
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < np.ptp(lengths) / 3


def test_cloze_mask_always_masks_last_real_item():
    b = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    inputs, targets = cloze_mask(b, 0.0, 99, np.random.default_rng(0))
    assert inputs.tolist() == [[0, 1, 2, 99], [4, 5, 6, 99]]
    assert targets.tolist() == [[0, 0, 0, 3], [0, 0, 0, 7]]


def test_gap_buckets():
    from shopformer.train.batches import gap_buckets

    nan = np.nan
    # padding, first event, then gaps of 0 s, 60 s (1 min -> 2 + 1), 1 day (1440 min -> 2 + 10)
    times = np.array([[nan, 0.0, 0.0, 60.0, 60.0 + 86400]])
    assert gap_buckets(times, 32).tolist() == [[0, 1, 2, 3, 12]]
    assert gap_buckets(times, 5).tolist() == [[0, 1, 2, 3, 5]]  # capped


def test_build_windows_keeps_side_features_aligned():
    from shopformer.train.batches import build_windows

    s = Sequences.from_lists([[1, 2, 3], [4]])
    s.event_types = np.array([0, 4, 4, 1], dtype=np.int8)
    s.timestamps = np.array([0.0, 60.0, 120.0, 5.0])
    w = build_windows(s, 2, event_types=True, time_gap_buckets=8)
    assert w.items.tolist() == [[2, 3], [0, 4]]
    assert w.types.tolist() == [[5, 5], [0, 2]]
    assert w.gaps.tolist() == [[1, 3], [0, 1]]  # a window's first event has no visible gap
    t = w.select(np.array([1])).trim()
    assert t.items.tolist() == [[4]] and t.types.tolist() == [[2]]


def test_all_windows_make_every_event_but_the_first_a_target_once():
    from shopformer.train.batches import all_windows

    lists = [list(range(1, 12)), [50, 60], [70], list(range(20, 25))]
    windows = all_windows(Sequences.from_lists(lists), 4)
    rows = [windows.row(r).tolist() for r in range(len(windows))]
    # 1..11 from the end: [8..11], [5..8], [2..5], [1, 2]: consecutive windows share one event
    assert rows == [[8, 9, 10, 11], [5, 6, 7, 8], [2, 3, 4, 5], [1, 2], [50, 60], [70],
                    [21, 22, 23, 24], [20, 21]]
    targets = sorted(x for r in rows for x in r[1:])
    assert targets == sorted(x for row in lists for x in row[1:])
