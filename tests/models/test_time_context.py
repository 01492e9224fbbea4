"""Time context in the sequence model, on a shop where only the season decides.

Items 1..5 sell only in December, items 6..10 only in the other months; the day of year
of each purchase is independent of the customer's earlier ones, so the history says
nothing about the next item. Only the moment of the prediction tells the two sets apart.
"""

from datetime import datetime, timezone

import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.features.time_context import (
    check_holidays,
    day_of_year,
    days_to_holiday,
    holiday_buckets,
    query_gap_buckets,
)
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.batches import build_windows
from shopformer.train.loop import TrainConfig

DECEMBER, OTHER = np.arange(1, 6), np.arange(6, 11)


def ts(y: int, m: int, d: int, h: int = 12) -> float:
    return datetime(y, m, d, h, tzinfo=timezone.utc).timestamp()


def season_shop(users: int, seed: int) -> Sequences:
    """5 purchases per customer, each 1 to 365 days after the previous one (uniform), so
    each day of the year is as likely whatever the earlier days were; a December purchase
    (about 1 in 12) is one of items 1..5, any other one of items 6..10."""
    rng = np.random.default_rng(seed)
    offsets, items, times = [0], [], []
    for _ in range(users):
        t = ts(2005, 1, 1) + rng.uniform(0, 365 * 86400)
        for _ in range(5):
            t += rng.uniform(1, 366) * 86400
            december = datetime.fromtimestamp(t, timezone.utc).month == 12
            items.append(int(rng.choice(DECEMBER if december else OTHER)))
            times.append(t)
        offsets.append(len(items))
    return Sequences(np.array(offsets), np.array(items), np.array(times, dtype=np.float64))


def fit(time_context: bool, epochs: int = 10, holidays=("12-25",)) -> SASRecRecommender:
    arch = SASRecConfig(max_len=8, d_model=32, n_layers=1, n_heads=1, dropout=0.0,
                        time_context=time_context, holidays=holidays)
    train = TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, warmup_steps=10, seed=0, threads=1)
    return SASRecRecommender(TransformerConfig(arch=arch, train=train)).fit(season_shop(800, 0), 10)


def right_share(model: SASRecRecommender, at: float, wanted: np.ndarray) -> float:
    """Share of the top 5 (over 200 new customers asked at ``at``) in ``wanted``."""
    history = season_shop(200, 1)
    top = np.argsort(-model.score(history, at=at), axis=1)[:, :5]
    return float(np.isin(top, wanted).mean())


def test_calendar_columns_have_known_values():
    t = np.array([ts(2011, 12, 25), ts(2011, 12, 20), ts(2011, 12, 26), ts(2011, 1, 1), np.nan])
    assert day_of_year(t).tolist() == [359, 354, 360, 1, 0]
    # 2011-12-26 -> 2012-12-25: 365 days (2012 has a Feb 29)
    assert days_to_holiday(t[:4], ("12-25",)).tolist() == [0, 5, 365, 358]
    assert days_to_holiday(np.array([ts(2011, 11, 20)]), ("12-25", "2011-11-25")).tolist() == [5]
    assert days_to_holiday(np.array([ts(2011, 11, 26)]), ("2011-11-25",)).tolist() == [366]  # none ahead
    assert days_to_holiday(np.array([ts(2011, 2, 27)]), ("02-29",)).tolist() == [2]  # Mar 1 in 2011
    # 1 + floor(log2(1 + days)); 0 = unknown
    assert holiday_buckets(t, ("12-25",)).tolist() == [1, 3, 9, 9, 0]
    gaps = query_gap_buckets(np.array([0.0, 0.0, 0.0, np.nan]), np.array([0.0, 60.0, 7 * 60.0, 0.0]))
    assert gaps.tolist() == [2, 3, 5, 0]
    with pytest.raises(ValueError, match="holidays: '13-01'"):
        check_holidays(("12-25", "13-01"))
    with pytest.raises(ValueError, match="holidays"):
        SASRecConfig(holidays=("christmas",))
    with pytest.raises(ValueError, match="causal"):
        SASRecConfig(time_context=True, causal=False)


def test_each_position_reads_the_time_of_the_next_event_and_the_last_the_request():
    seqs = Sequences(np.array([0, 3]), np.array([1, 2, 3]), np.array([ts(2011, 1, 1), ts(2011, 1, 2), ts(2011, 1, 4)]))
    w = build_windows(seqs, 4, holidays=("12-25",), at=np.array([ts(2011, 12, 25)]))
    assert w.context.shape == (1, 4, 5)
    assert w.context[0, 0].tolist() == [0, 0, 1, 9, 0]  # padding cell: only its query (event 1) is known
    assert w.context[0, 1:, 0].tolist() == [1, 2, 4]  # the events' own days
    assert w.context[0, 1:, 2].tolist() == [2, 4, 359]  # the next event's day; the last: the request's
    assert w.context[0, 3, 3] == 1  # the request falls on the holiday
    no_time = Sequences(np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="timestamp"):
        build_windows(no_time, 4, holidays=("12-25",))


def test_the_season_is_learned_with_time_context_and_not_without():
    december, july = ts(2013, 12, 15), ts(2013, 7, 15)
    timed = fit(True)
    assert right_share(timed, december, DECEMBER) >= 0.9
    assert right_share(timed, july, OTHER) >= 0.9
    plain = fit(False)
    assert not plain.reads_time
    # without the time of the question the answer is the same all year: the other months' items
    assert right_share(plain, december, DECEMBER) <= 0.3
    assert right_share(plain, july, OTHER) >= 0.9


def test_time_context_round_trips_through_save_and_load(tmp_path):
    model = fit(True, epochs=2, holidays=("12-25", "2011-11-25"))
    model.save(tmp_path)
    loaded = SASRecRecommender.load(tmp_path)
    assert loaded.config == model.config
    assert loaded.config.arch.time_context and loaded.config.arch.holidays == ("12-25", "2011-11-25")
    history = season_shop(5, 2)
    at = np.full(5, ts(2013, 12, 15))
    np.testing.assert_allclose(loaded.score(history, at=at), model.score(history, at=at), rtol=1e-5)
    # the time is read: another moment gives other scores
    assert not np.allclose(loaded.score(history, at=ts(2013, 7, 15))[:, 1:], loaded.score(history, at=at)[:, 1:])


def test_occlusion_of_a_time_context_model_is_each_history_without_the_event():
    from shopformer.models.occlusion import occlusion_user_vectors

    model = fit(True, epochs=1)
    history = season_shop(1, 3)  # one customer, 5 purchases
    got = occlusion_user_vectors(model, history, np.array([0, 3]))
    for row, drop in enumerate([None, 0, 3]):
        keep = np.ones(5, dtype=bool)
        if drop is not None:
            keep[drop] = False
        alone = model.user_vectors(history.keep(keep))
        np.testing.assert_allclose(got[row].numpy(), alone[0].numpy(), rtol=1e-4, atol=1e-5)
    # removing an event changes the vector (the rows are not all the same)
    assert not np.allclose(got[1].numpy(), got[0].numpy())
