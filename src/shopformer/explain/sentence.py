"""One short sentence per recommended item, built only from its measured reasons:

    "Because you bought Shampoo and Conditioner; 312 customers who bought Shampoo also
     bought this; same brand (acme) as Shampoo."

The events named are the top attributed ones carrying at least ``min_share`` of the
item's positive attribution (so a sentence never names an event whose removal would
barely matter); the collaborative clause is the strongest co-occurrence count; the
content clause names shared attributes. With none of these the item was recommended
for its popularity, and the sentence says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shopformer.explain.evidence import VERBS
from shopformer.explain.reasons import CollaborativeReason, ContentReason, EventReason

#: "Because you <phrase>" per event type, {} = the item
PHRASES = {
    "add_to_cart": "added {} to your cart",
    "remove_from_cart": "removed {} from your cart",
}
#: readable (singular) names of content fields; several values keep the field's name
FIELDS = {"categories": "category", "tags": "tag", "price_band": "price band"}


@dataclass(frozen=True)
class SentenceConfig:
    """max_events: events named at most; min_share: an event is named only with at least
    this share of the item's positive attribution; max_attributes: shared attributes
    named at most; max_label: characters of a title kept; min_text_similarity: the
    text clause appears only above it; unknown_verb: for events of unknown type (e.g.
    an anonymous session's items)."""

    max_events: int = 2
    min_share: float = 0.15
    max_attributes: int = 2
    max_label: int = 40
    min_text_similarity: float = 0.5
    unknown_verb: str = "chose"


def label(item_id: str, title: str | None, config: SentenceConfig = SentenceConfig()) -> str:
    """The title (shortened) when the catalog has one, else the item id."""
    text = (title or "").strip() or item_id
    return text if len(text) <= config.max_label else text[: config.max_label - 1].rstrip() + "…"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def events_clause(events: Sequence[EventReason], config: SentenceConfig) -> str | None:
    named = [e for e in events if e.share >= config.min_share and e.attribution > 0][: config.max_events]
    if not named:
        return None
    groups: dict[str, list[str]] = {}  # verb -> labels, in order of first appearance
    for e in named:
        verb = e.event_type if e.event_type in PHRASES else VERBS.get(e.event_type or "", config.unknown_verb)
        groups.setdefault(verb, []).append(label(e.item_id, e.title, config))
    parts = []
    for verb, labels in groups.items():
        if verb in PHRASES:
            parts.extend(PHRASES[verb].format(x) for x in labels)
        else:
            parts.append(f"{verb} {_and(labels)}")
    return "because you " + " and ".join(parts)


def collaborative_clause(collaborative: Sequence[CollaborativeReason], config: SentenceConfig) -> str | None:
    best = max(collaborative, key=lambda c: c.customers, default=None)
    if best is None or best.customers <= 0:
        return None
    who = "customer" if best.customers == 1 else "customers"
    return f"{best.customers:,} {who} who {best.verb} {label(best.item_id, best.title, config)} also {best.verb} this"


def content_clause(content: ContentReason | None, titles: dict[str, str | None], config: SentenceConfig) -> str | None:
    if content is None:
        return None
    if content.shared:
        first = content.shared[0]
        same = [s for s in content.shared if first.item_ids[0] in s.item_ids][: config.max_attributes]
        by_field: dict[str, list[str]] = {}  # field -> values, in order
        for s in same:
            by_field.setdefault(s.field, []).append(s.value)
        what = _and([
            f"{FIELDS.get(f, f) if len(v) == 1 else f} ({', '.join(v)})" for f, v in by_field.items()
        ])
        return f"same {what} as {label(first.item_ids[0], titles.get(first.item_ids[0]), config)}"
    if (
        content.similar_item_id is not None and content.text_similarity is not None
        and content.text_similarity >= config.min_text_similarity
    ):
        x = content.similar_item_id
        return f"described like {label(x, titles.get(x), config)} (text similarity {content.text_similarity:.2f})"
    return None


def build_sentence(
    events: Sequence[EventReason],
    collaborative: Sequence[CollaborativeReason],
    content: ContentReason | None,
    item_customers: int | None,
    config: SentenceConfig = SentenceConfig(),
    verb: str = "bought",
    titles: dict[str, str | None] | None = None,
) -> str:
    """The sentence for one item; ``verb`` is the interaction verb for the popularity
    fallback ("1,204 customers bought this"); ``titles`` (item id -> title) labels
    history items that are named only by the content clause."""
    titles = {**(titles or {}), **{e.item_id: e.title for e in events}, **{c.item_id: c.title for c in collaborative}}
    clauses = [c for c in (
        events_clause(events, config),
        collaborative_clause(collaborative, config),
        content_clause(content, titles, config),
    ) if c]
    if not clauses:
        if item_customers:
            who = "customer" if item_customers == 1 else "customers"
            return f"Popular: {item_customers:,} {who} {verb} this."
        return "Popular with customers."
    text = "; ".join(clauses) + "."
    return text[0].upper() + text[1:]
