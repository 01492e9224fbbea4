"""Calendar features of a week: where it falls in the year, how far Christmas is, and
how many public holidays it holds (the ``holidays`` package's calendar, England by
default: the UCI Online Retail shop is in the UK).

``calendar_features(weeks)`` -> ``[T, 4]`` float32, each in about [-1, 1]:
0, 1  sin / cos of the week's position in the year (its Monday's day of year / 365.25)
2     weeks until the week holding Christmas Day, / 13, clipped to [0, 1] (1 = far)
3     public holidays (Monday..Sunday) in the week, / 2
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

N_CALENDAR = 4


@dataclass(frozen=True)
class CalendarConfig:
    """Which holiday calendar (``holidays.country_holidays(country, subdiv=...)``)."""

    country: str = "GB"
    subdiv: str | None = "ENG"


@lru_cache(maxsize=32)
def _holidays(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    import holidays  # the well-kept holiday calendars; only the forecast package needs it

    return frozenset(holidays.country_holidays(country, subdiv=subdiv, years=year).keys())


def calendar_features(weeks: np.ndarray, config: CalendarConfig = CalendarConfig()) -> np.ndarray:
    """[T, N_CALENDAR] features of the weeks starting on ``weeks`` (datetime64[D] Mondays)."""
    weeks = np.asarray(weeks, dtype="datetime64[D]")
    out = np.zeros((len(weeks), N_CALENDAR), dtype=np.float32)
    for t, monday in enumerate(weeks.tolist()):  # datetime.date
        day_of_year = monday.timetuple().tm_yday
        angle = 2 * np.pi * day_of_year / 365.25
        out[t, 0], out[t, 1] = np.sin(angle), np.cos(angle)
        christmas = date(monday.year, 12, 25)
        if (christmas - monday).days < 0:
            christmas = date(monday.year + 1, 12, 25)
        out[t, 2] = min((christmas - monday).days // 7, 13) / 13
        days = [date.fromordinal(monday.toordinal() + k) for k in range(7)]
        hols = _holidays(config.country, config.subdiv, monday.year) | _holidays(config.country, config.subdiv,
                                                                                 days[-1].year)
        out[t, 3] = sum(d in hols for d in days) / 2
    return out
