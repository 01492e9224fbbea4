"""Evaluation splits: leave-one-out and global temporal.

A split gives the training sequences plus, for validation and test, a set of
:class:`EvalCases`: for each evaluated user, the history the model sees and the items
it should rank high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopformer.features.sequences import Sequences


@dataclass
class EvalCases:
    """Users to evaluate, the history each is scored from, and each one's target items."""

    users: np.ndarray  # (U,) row indexes into the full SequenceData (user index - 1)
    history: Sequences  # U rows: what the model may see
    targets: Sequences  # U rows: the held-out items (>= 1 per row)

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    protocol: str
    train: Sequences  # one row per user of the full data (rows may be empty)
    valid: EvalCases
    test: EvalCases


def _cut(seqs: Sequences, keep_lengths: np.ndarray) -> Sequences:
    """Each row truncated to its first ``keep_lengths[u]`` elements."""
    keep_lengths = np.minimum(keep_lengths, seqs.lengths)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(keep_lengths, out=offsets[1:])
    take = np.repeat(seqs.offsets[:-1], keep_lengths) + (
        np.arange(offsets[-1]) - np.repeat(offsets[:-1], keep_lengths)
    )
    return Sequences(
        offsets,
        seqs.items[take],
        None if seqs.timestamps is None else seqs.timestamps[take],
        None if seqs.event_types is None else seqs.event_types[take],
    )


def _single_targets(seqs: Sequences, users: np.ndarray, pos_from_end: int) -> Sequences:
    """One target per user: the element ``pos_from_end`` from the end (1 = last)."""
    idx = seqs.offsets[users + 1] - pos_from_end
    return Sequences(np.arange(len(users) + 1, dtype=np.int64), seqs.items[idx],
                     None if seqs.timestamps is None else seqs.timestamps[idx])  # when it was asked (time context)


def leave_one_out(seqs: Sequences) -> Split:
    """Last item = test target, second last = validation target, the rest = training.

    Users with fewer than 3 events keep everything in training and are not evaluated
    (as in SASRec's protocol, where such users are not evaluated). The test history
    includes the validation item.
    """
    lengths = seqs.lengths
    users = np.flatnonzero(lengths >= 3)
    train_len = np.where(lengths >= 3, lengths - 2, lengths)
    train = _cut(seqs, train_len)
    valid = EvalCases(users, train.rows(users), _single_targets(seqs, users, 2))
    test_hist = _cut(seqs, np.where(lengths >= 3, lengths - 1, lengths))
    test = EvalCases(users, test_hist.rows(users), _single_targets(seqs, users, 1))
    return Split("leave_one_out", train, valid, test)


def _window_targets(seqs: Sequences, lo: float, hi: float, hist_len: np.ndarray) -> EvalCases:
    """Users with events in ``[lo, hi)``: history = events before ``lo``, targets = the
    distinct items of the window (first occurrence order)."""
    ts = seqs.timestamps
    in_window = (ts >= lo) & (ts < hi)
    row_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    users = np.unique(row_of[in_window])
    users = users[hist_len[users] > 0]  # a user with no past is a cold-start case, not here
    rows: list[list[int]] = []
    for u in users:  # per evaluated user, not per event: O(U) small Python work
        sl = slice(seqs.offsets[u], seqs.offsets[u + 1])
        window_items = seqs.items[sl][in_window[sl]]
        _, first = np.unique(window_items, return_index=True)
        rows.append(window_items[np.sort(first)].tolist())
    history = _cut(seqs, hist_len).rows(users)
    return EvalCases(users, history, Sequences.from_lists(rows))


def temporal(seqs: Sequences, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Global temporal split: the last ``test_fraction`` of events (by time) are test,
    the ``valid_fraction`` before them validation, everything earlier training.

    Cut points are timestamps, so every user is cut at the same moment.
    """
    if seqs.timestamps is None or np.isnan(seqs.timestamps).any():
        raise ValueError("temporal split needs a timestamp on every event; this data has none")
    t_valid, t_test = np.quantile(
        seqs.timestamps, [1 - valid_fraction - test_fraction, 1 - test_fraction]
    )
    return temporal_at(seqs, float(t_valid), float(t_test))


def temporal_at(seqs: Sequences, t_valid: float, t_test: float) -> Split:
    """Global temporal split at explicit times: training = events before ``t_valid``,
    validation = ``[t_valid, t_test)``, test = from ``t_test`` on."""
    ts = seqs.timestamps
    # Rows are time-ordered, so the count of events before a cut is the kept length.
    row_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    before_valid = np.bincount(row_of[ts < t_valid], minlength=len(seqs))
    before_test = np.bincount(row_of[ts < t_test], minlength=len(seqs))
    train = _cut(seqs, before_valid)
    valid = _window_targets(seqs, t_valid, t_test, before_valid)
    test = _window_targets(seqs, t_test, np.inf, before_test)
    return Split("temporal", train, valid, test)
