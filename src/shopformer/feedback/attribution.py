"""Attributing one event to the answer it came from, as it is posted (for the live
Prometheus counters; the report attributes from the store, see :mod:`.online`).

The process remembers its own recent answers (a bounded LRU keyed by ``request_id``), so
most events are attributed with no I/O; an answer it does not remember (served by another
worker or replica, or too long ago) is read from the store once and remembered. An answer
another process served is found there once that process has written it (within its
``flush_s``); an event that comes sooner is counted as unmatched in this process's
counters, and attributed by the report all the same.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .online import position_bucket


@dataclass(frozen=True)
class Shown:
    """What one answer showed, as attribution needs it (no customer id: the memory of
    recent answers never holds one, so an erasure has nothing to take out of it)."""

    item_ids: tuple[str, ...]
    placement: str
    route: str
    model_version: str | None = None
    experiment: str | None = None
    variant: str | None = None

    def position(self, item_id: str | None) -> int | None:
        """The 1-based rank of ``item_id`` in the answer; None when it was not shown."""
        try:
            return self.item_ids.index(item_id) + 1
        except ValueError:
            return None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Shown:
        """From an impression row (the store's, or one being logged)."""
        return cls(tuple(row["item_ids"]), row["placement"], row["route"], row.get("model_version"),
                   row.get("experiment"), row.get("variant"))


@dataclass(frozen=True)
class Attribution:
    """An event joined to the answer it came from."""

    request_id: str
    event_type: str
    item_id: str | None
    position: int | None
    shown: Shown
    #: purchases: quantity x the price paid, else the catalog price (0 when neither is known); else 0
    revenue: float = 0.0

    @property
    def bucket(self) -> str:
        return position_bucket(self.position)


class Attributor:
    """Recent answers of this process (at most ``size``, least recently used dropped
    first) and the store ``lookup`` (request id -> impression row or None) behind them."""

    def __init__(self, size: int, lookup: Callable[[str], Mapping[str, Any] | None]) -> None:
        self.size = size
        self._lookup = lookup
        self._recent: OrderedDict[str, Shown] = OrderedDict()
        self._lock = threading.Lock()  # routes run on the event loop and in the thread pool

    def remember(self, request_id: str, shown: Shown) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._recent[request_id] = shown
            self._recent.move_to_end(request_id)
            while len(self._recent) > self.size:
                self._recent.popitem(last=False)

    def find(self, request_id: str) -> Shown | None:
        """The answer ``request_id`` names: remembered, else read from the store (and then
        remembered); None when neither knows it."""
        with self._lock:
            shown = self._recent.get(request_id)
            if shown is not None:
                self._recent.move_to_end(request_id)
                return shown
        row = self._lookup(request_id)
        if row is None:
            return None
        shown = Shown.from_row(row)
        self.remember(request_id, shown)
        return shown

    def attribute(self, request_id: str, event_type: str, item_id: str | None, quantity: float | None = None,
                  price_of: Callable[[str], float | None] | None = None,
                  paid: float | None = None) -> Attribution | None:
        """The event's attribution, or None when its answer is unknown. A purchase is
        valued at its quantity (1 when absent) times ``paid`` (the unit price the event
        names) or, without it, ``price_of(item_id)`` (the catalog price, or None)."""
        shown = self.find(request_id)
        if shown is None:
            return None
        revenue = 0.0
        if event_type == "purchase" and item_id is not None and (paid is not None or price_of is not None):
            price = paid if paid is not None else price_of(item_id)
            revenue = (1.0 if quantity is None else float(quantity)) * float(price) if price is not None else 0.0
        return Attribution(request_id, event_type, item_id, shown.position(item_id), shown, revenue)


__all__ = ["Attribution", "Attributor", "Shown"]
