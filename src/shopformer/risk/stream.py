"""Unusual behaviour on the event stream, scored as each event arrives.

:class:`StreamRiskScorer` keeps a small state per user (and per session) and answers
every event with a score in [0, 1] and the reasons behind it. Rules, each a strength in
[0, 1] (the measured value over its limit, squared, capped at 1):

- ``burst``: actions by the user in the last ``window_s`` seconds over ``max_actions``;
- ``inhuman_speed``: the share of the user's last ``gap_count`` gaps between actions
  shorter than ``min_human_gap_s`` but not 0 (a person needs time to read and click;
  identical timestamps are a batch post or a coarse clock) over ``max_fast_share``, once
  there are ``min_gaps`` gaps;
- ``repeated_identical``: the same (type, item) in the last ``window_s`` seconds over
  ``max_identical``;
- ``session_volume``: actions in the session over ``max_session_actions``;
- ``impossible_sequence``: purchases of an item never viewed or carted in the session,
  over ``max_unseen_purchases`` - only once the shop has been seen logging views (a
  shop that logs only orders, like Online Retail, never trips it).

The score is the noisy-or of the strengths, 1 - prod(1 - s); a reason is named when its
strength is at least ``reason_floor``. The lines of one order arrive together: events
with the same ``checkout_id`` as the user's previous action are one action (they add
to nothing but the identical-event count). Users idle for ``idle_s`` are forgotten, and at
most ``max_users`` are kept (the least recent go first), so memory stays bounded.

Events may arrive a little out of time order (another API replica's events come over
Redis about a millisecond after a later one stored here, serve/stream_watch.py): each is
placed by its timestamp among the user's recent actions and gap times, so ``burst``,
``inhuman_speed`` and ``repeated_identical`` measure what they would have in order (the
score answered is the state's at its newest event). ``session_volume`` and
``impossible_sequence`` follow arrival order: a view that arrives after the purchase it
preceded by milliseconds counts that purchase as never viewed.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter

SEEN_TYPES = ("view", "click", "add_to_cart")


@dataclass(frozen=True)
class StreamRiskConfig:
    """The limits of the rules (module docstring); defaults are a person's pace in a shop."""

    window_s: float = 60.0
    max_actions: int = 30
    min_human_gap_s: float = 0.5
    gap_count: int = 10
    min_gaps: int = 5
    max_fast_share: float = 0.5
    max_identical: int = 10
    max_session_actions: int = 300
    max_unseen_purchases: int = 3
    session_gap_s: float = 1800.0
    idle_s: float = 3600.0
    max_users: int = 1_000_000
    reason_floor: float = 0.25
    threshold: float = 0.5


@dataclass
class StreamEvent:
    user_id: str
    type: str
    timestamp: float  # seconds (UTC epoch)
    item_id: str | None = None
    session_id: str | None = None  # None: a new session after session_gap_s of silence
    checkout_id: str | None = None  # lines of one order share it


@dataclass
class StreamScore:
    score: float
    flagged: bool
    reasons: list[dict]
    session: str


@dataclass
class _UserState:
    last_t: float = float("-inf")
    last_checkout: str | None = None
    session: str = ""
    session_actions: int = 0
    recent: deque = field(default_factory=deque)  # (t, (type, item)) in the window
    identical: Counter = field(default_factory=Counter)
    times: deque = field(default_factory=deque)  # the last gap_count + 1 action times, ascending
    seen: set = field(default_factory=set)
    unseen_purchases: int = 0


class StreamRiskScorer:
    def __init__(self, config: StreamRiskConfig = StreamRiskConfig()):
        self.config = config
        self.users: OrderedDict[str, _UserState] = OrderedDict()
        self.logs_views = False
        self._now = float("-inf")

    def score(self, event: StreamEvent) -> StreamScore:
        """Update the state with ``event`` and score it (events in time order per user)."""
        c = self.config
        t = float(event.timestamp)
        self._now = max(self._now, t)
        state = self.users.pop(event.user_id, None)
        if state is None or t - state.last_t > c.idle_s:
            state = _UserState()
        self._forget()
        self.users[event.user_id] = state  # most recent last
        if event.type in SEEN_TYPES[:1]:
            self.logs_views = True
        self._session(state, event, t)
        key = (event.type, event.item_id)
        same_checkout = event.checkout_id is not None and event.checkout_id == state.last_checkout
        if not same_checkout:  # a new action
            _insert(state.times, t, float)
            if len(state.times) > c.gap_count + 1:
                state.times.popleft()  # a late event older than all kept falls out here
            state.last_t = max(state.last_t, t)
            state.session_actions += 1
        state.last_checkout = event.checkout_id
        _insert(state.recent, (t, key, same_checkout), itemgetter(0))
        state.identical[key] += 1
        newest = state.recent[-1][0]  # t, unless this event came late
        while state.recent and state.recent[0][0] <= newest - c.window_s:
            _, old, _ = state.recent.popleft()
            state.identical[old] -= 1
            if not state.identical[old]:
                del state.identical[old]
        if event.type in SEEN_TYPES:
            state.seen.add(event.item_id)
        elif event.type == "purchase" and self.logs_views and event.item_id not in state.seen:
            state.unseen_purchases += 1
        return self._score(state)

    def _session(self, state: _UserState, event: StreamEvent, t: float) -> None:
        if event.session_id is not None:
            new = event.session_id != state.session
            name = event.session_id
        else:
            new = t - state.last_t > self.config.session_gap_s
            # named by its start: unique even after an idle user's state was forgotten
            name = f"{event.user_id}@{t:.0f}" if new else state.session
        if new:
            state.session = name
            state.session_actions, state.unseen_purchases = 0, 0
            state.seen = set()

    def _score(self, state: _UserState) -> StreamScore:
        c = self.config
        actions = sum(1 for _, _, merged in state.recent if not merged)
        times = list(state.times)
        gaps = [b - a for a, b in zip(times, times[1:])]
        # 0 s is not speed: events posted in one batch, or a clock that counts whole seconds
        fast = sum(0 < g < c.min_human_gap_s for g in gaps) / len(gaps) if len(gaps) >= c.min_gaps else 0.0
        top = max(state.identical.values()) if state.identical else 0
        measured = {
            "burst": (actions, c.max_actions, f"{actions} actions in {c.window_s:g} s"),
            "inhuman_speed": (fast, c.max_fast_share,
                              f"{fast:.0%} of the last {len(gaps)} gaps under {c.min_human_gap_s:g} s"),
            "repeated_identical": (top, c.max_identical, f"the same event {top} times in {c.window_s:g} s"),
            "session_volume": (state.session_actions, c.max_session_actions,
                               f"{state.session_actions} actions in the session"),
            "impossible_sequence": (state.unseen_purchases, c.max_unseen_purchases,
                                    f"{state.unseen_purchases} purchases of items never viewed or carted in the session"),
        }
        keep, reasons = 1.0, []
        for name, (value, limit, text) in measured.items():
            strength = min(1.0, (value / limit) ** 2) if limit > 0 else 0.0
            keep *= 1.0 - strength
            if strength >= c.reason_floor:
                reasons.append({"rule": name, "strength": round(strength, 3), "detail": text})
        score = 1.0 - keep
        reasons.sort(key=lambda r: -r["strength"])
        return StreamScore(score=score, flagged=score >= c.threshold, reasons=reasons, session=state.session)

    def _forget(self) -> None:
        """Drop users idle for idle_s (the oldest first) and any past max_users."""
        while self.users:
            user, state = next(iter(self.users.items()))
            if len(self.users) > self.config.max_users or self._now - state.last_t > self.config.idle_s:
                del self.users[user]
            else:
                break


def _insert(ordered: deque, entry: object, time_of: Callable[[object], float]) -> None:
    """Put ``entry`` into ``ordered`` (ascending by ``time_of``), after any equal one. A
    late entry is rarely more than a few places from the end, so the search runs from there."""
    t, i = time_of(entry), len(ordered)
    while i and time_of(ordered[i - 1]) > t:
        i -= 1
    if i == len(ordered):
        ordered.append(entry)
    else:
        ordered.insert(i, entry)
