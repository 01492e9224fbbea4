"""Response schemas of the audience routes (serve/routes/audience.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .schemas import ModelInfo, _Out

#: most customers one audience answer names
MAX_AUDIENCE_K = 100_000


class AudienceMember(_Out):
    user_id: str
    score: float = Field(description="log-probability-like score (higher: more likely to buy); see `scoring`")
    rank: int = Field(description="1 = most likely")


class AudienceResponse(_Out):
    request_id: str = Field(description="this answer's id (also the X-Request-ID header), for attribution")
    item_id: str | None = Field(None, description="the item (item audiences)")
    category: str | None = Field(None, description="the category (category audiences)")
    items_scored: int = Field(description="items the score is over: 1, or the category's items the model knows")
    customers: list[AudienceMember]
    customers_indexed: int = Field(description="customers with a usable history in the states searched")
    states_built_at: datetime = Field(description="when the customers' states were built from the store: events "
                                                  "stored later are not in this answer (SHOPFORMER_AUDIENCE_REFRESH_S)")
    scoring: dict = Field(description="the audience settings (rank/audience.py AudienceConfig, or the "
                                      "learned ranker's with method learned_ranker)")
    model: ModelInfo
