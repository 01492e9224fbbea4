"""Request options and answer provenance of the re-ranking steps (serve/reranking.py):
diversity (MMR weight, per-category cap) and reserved slots for new products."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shopformer.rank.diversity import DiversityConfig
from shopformer.rank.exposure import ExposureConfig

from .reranking import Reranking

#: new-item slots one request may ask for (the answer holds at most MAX_K anyway)
MAX_SLOTS = 10


class RerankOptions(BaseModel):
    """Diversity and new-product exposure for one answer; a field left out keeps the
    server's default (diversity off; new-item slots from SHOPFORMER_NEW_ITEM_*)."""

    model_config = ConfigDict(extra="forbid")

    diversity: float | None = Field(default=None, ge=0.0, le=1.0, description="MMR weight of dissimilarity "
                                    "(lambda = 1 - diversity); 0: the model's order")
    max_per_category: int | None = Field(default=None, ge=1, le=100, description="at most this many items of one "
                                         "(leaf) category in the answer")
    new_item_slots: int | None = Field(default=None, ge=0, le=MAX_SLOTS, description="new products guaranteed in "
                                       "the answer (0: none)")
    new_item_policy: Literal["best", "thompson"] | None = Field(
        default=None, description="which new products fill the slots: the best scored for this customer, or "
        "Thompson sampling on their click-through")

    def apply_to(self, default: Reranking) -> Reranking:
        """``default`` with this request's fields over it (the same object when none is set)."""
        if all(v is None for v in (self.diversity, self.max_per_category, self.new_item_slots, self.new_item_policy)):
            return default
        d, e = default.diversity, default.exposure
        diversity = DiversityConfig(self.diversity if self.diversity is not None else d.diversity,
                                    self.max_per_category if self.max_per_category is not None else d.max_per_category,
                                    d.fetch_factor)
        exposure: ExposureConfig = replace(
            e, slots=e.slots if self.new_item_slots is None else self.new_item_slots,
            policy=e.policy if self.new_item_policy is None else self.new_item_policy)
        return Reranking(diversity, exposure)


class RerankShiftOut(BaseModel):
    """An item the re-ranking moved: ``step`` ``diversity`` (MMR), ``category_cap`` or
    ``new_item_slot``; ranks are 1-based, ``from_rank`` among the model's candidates
    (null: a new item that was not among them), ``to_rank`` in the re-ranked order
    before the business rules (null: pushed out of the answer)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    step: Literal["diversity", "category_cap", "new_item_slot"]
    from_rank: int | None
    to_rank: int | None


RERANKED_FIELD = Field(default_factory=list, description="what diversity and new-item slots moved (request options "
                                                         "diversity, max_per_category, new_item_slots)")
