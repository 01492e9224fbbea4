"""The sentence says exactly what the reasons measured, and nothing weaker."""

from __future__ import annotations

from shopformer.explain.reasons import CollaborativeReason, ContentReason, EventReason, SharedAttribute
from shopformer.explain.sentence import SentenceConfig, build_sentence, label


def ev(pos: int, item: str, title: str | None, share: float, kind: str | None = "purchase") -> EventReason:
    return EventReason(pos, item, title, kind, attribution=share, share=share)


def test_events_collaborative_and_content_make_one_sentence():
    events = [ev(3, "x1", "Shampoo", 0.6), ev(1, "x2", "Conditioner", 0.3), ev(0, "x3", "Comb", 0.1)]
    collab = [CollaborativeReason("x2", "Conditioner", 40), CollaborativeReason("x1", "Shampoo", 312)]
    content = ContentReason((SharedAttribute("brand", "acme", ("x1",)), SharedAttribute("categories", "Hair", ("x1", "x2"))))
    text = build_sentence(events, collab, content, 900)
    assert text == ("Because you bought Shampoo and Conditioner; 312 customers who bought Shampoo also bought this; "
                    "same brand (acme) and category (Hair) as Shampoo.")


def test_small_shares_are_not_named_and_ids_stand_in_for_titles():
    events = [ev(2, "sku-9", None, 0.9), ev(0, "sku-1", "Tiny", 0.05)]
    text = build_sentence(events, [CollaborativeReason("sku-9", None, 1)], None, 5)
    assert text == "Because you bought sku-9; 1 customer who bought sku-9 also bought this."


def test_mixed_event_types_and_unknown_types():
    events = [ev(2, "a", "Apron", 0.5, "add_to_cart"), ev(1, "b", "Bowl", 0.5, "view")]
    assert build_sentence(events, [], None, None) == "Because you added Apron to your cart and viewed Bowl."
    session = [ev(0, "c", "Cup", 1.0, None)]
    assert build_sentence(session, [], None, None) == "Because you chose Cup."


def test_text_similarity_clause_and_popularity_fallback():
    content = ContentReason((), "b", 0.83)
    assert build_sentence([], [], content, None, titles={"b": "Bowl"}) == "Described like Bowl (text similarity 0.83)."
    assert build_sentence([], [], ContentReason((), "b", 0.2), None) == "Popular with customers."
    assert build_sentence([], [], None, 1204) == "Popular: 1,204 customers bought this."
    assert build_sentence([], [CollaborativeReason("a", None, 0)], None, 1, verb="viewed") == "Popular: 1 customer viewed this."


def test_several_values_of_one_field_are_listed_together():
    content = ContentReason((SharedAttribute("tags", "17", ("x",)), SharedAttribute("tags", "2", ("x",))))
    assert build_sentence([], [], content, None) == "Same tags (17, 2) as x."


def test_long_titles_are_shortened():
    assert label("id", "A" * 60, SentenceConfig(max_label=10)) == "AAAAAAAAA…"
    assert label("id", "  ") == "id"
