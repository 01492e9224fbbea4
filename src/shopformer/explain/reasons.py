"""The reasons attached to one recommended item: what the CLI prints, the API returns
and the sentence is built from. Plain frozen dataclasses; :meth:`ItemExplanation.to_dict`
gives the JSON form (the API schema in ``serve/schemas.py`` mirrors it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class EventReason:
    """(a) A history event and how much the item's score drops without it."""

    position: int  # index in the history, 0 = oldest
    item_id: str
    title: str | None
    event_type: str | None
    attribution: float  # score with the history - score without this event
    share: float  # part of the item's positive attribution, 0..1


@dataclass(frozen=True)
class CollaborativeReason:
    """(b) Customers who have both the history item and the recommended item."""

    item_id: str  # the history item
    title: str | None
    customers: int  # who have both
    verb: str = "bought"


@dataclass(frozen=True)
class SharedAttribute:
    """(c) An attribute token the item shares with history items."""

    field: str
    value: str
    item_ids: tuple[str, ...]  # history items carrying it, most recent first


@dataclass(frozen=True)
class ContentReason:
    """(c) Content evidence: shared attributes and the closest history item by text."""

    shared: tuple[SharedAttribute, ...] = ()
    similar_item_id: str | None = None
    text_similarity: float | None = None


@dataclass(frozen=True)
class RuleEffect:
    """(d) A serving rule and how many items the model ranked above this one it removed."""

    rule: str  # e.g. "excluded: already in history", "filtered: category=kitchen"
    removed_above: int


@dataclass(frozen=True)
class Provenance:
    """(d) Where the model put the item and where the rules left it."""

    model_rank: int  # 1-based, by model score over the whole catalog
    final_rank: int  # 1-based, in the answer
    rules: tuple[RuleEffect, ...]  # rules that moved it (removed_above > 0)
    applied: tuple[str, ...]  # every rule the request applied


@dataclass(frozen=True)
class ItemExplanation:
    item_id: str
    index: int
    score: float
    events: tuple[EventReason, ...]  # top attributed events, largest first
    events_tested: int  # history events occluded (the latest ones)
    history_length: int
    collaborative: tuple[CollaborativeReason, ...]
    item_customers: int | None  # customers who have the item (None: no interaction data)
    content: ContentReason | None
    rules: Provenance | None
    sentence: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("index")
        return d
