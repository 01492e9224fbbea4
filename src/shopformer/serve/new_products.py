"""New products join a content-fused model at once, without retraining.

A model trained with product content (``train --content ... [--text]``) represents an
item by its ID embedding plus its content; a product it never saw has content only.
When the catalog gains products the served model does not know, :func:`with_products`
builds the next :class:`Served`: the model grown by those products
(``SASRecRecommender.with_new_items``), the vocabulary extended (old indexes unchanged),
and the vector indexes rebuilt over the grown item table. The service publishes it with
the same atomic swap a reload uses, so a product is recommendable and appears in
similar-item lists as soon as its upsert returns.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import polars as pl

from shopformer.features.vocab import Vocabulary

from .retrieval import build_vector_indexes


def places_new_products(model: object) -> bool:
    """True when ``model`` was trained with product content and can grow (one network:
    an ensemble cannot)."""
    single = getattr(getattr(model, "config", None), "members", 1) == 1
    return single and callable(getattr(model, "with_new_items", None)) and getattr(model, "content", None) is not None


class TextEncoders:
    """One sentence encoder per text model, loaded once per process (seconds), then
    ~10 ms per product."""

    def __init__(self) -> None:
        self._by_model: dict[str, object] = {}

    def get(self, model_name: str):  # noqa: ANN201 - a features.text.TextEncoder
        from shopformer.features.text import TextEncoder, TextEncoderConfig

        if model_name not in self._by_model:
            self._by_model[model_name] = TextEncoder(TextEncoderConfig(model=model_name))
        return self._by_model[model_name]


def with_products(served, products: pl.DataFrame, encoders: TextEncoders):  # noqa: ANN001, ANN201 - Served
    """The next Served, knowing the products of ``products`` that ``served`` does not;
    None when there are none or the model cannot place them."""
    model = served.run.model
    if not places_new_products(model) or products.height == 0:
        return None
    known = served.run.items
    new = products.filter(~pl.col("item_id").is_in(known.ids)).unique("item_id", keep="last", maintain_order=True)
    if new.height == 0:
        return None
    content = model.content
    vectors = None
    if content.vector_dim and content.config.text_model:
        from shopformer.features.text import product_text

        vectors = encoders.get(content.config.text_model).encode(product_text(new), progress=False)
    tokens, vectors = content.rows_for(new, vectors)
    grown = model.with_new_items(tokens, vectors)
    items = Vocabulary(known.ids + new["item_id"].to_list())
    run = replace(served.run, model=grown, items=items)
    indexes = build_vector_indexes(grown) if served.vectors is not None else None
    base = served.version.split("+", 1)[0]
    added = len(items) - int(served.run.info.get("n_items_trained", len(known)))
    run.info = {**served.run.info, "n_items_trained": served.run.info.get("n_items_trained", len(known))}
    return replace(served, run=run, version=f"{base}+{added}new", loaded_at=datetime.now(timezone.utc),
                   vectors=indexes)
