"""Request and response bodies of ``POST /v1/risk/orders`` (serve/routes/risk.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .schemas import MAX_ITEMS, Count, Id, Price, _In, _Out


class RiskLineIn(_In):
    """One line of the basket."""

    item_id: Id = Field(description="the product (the shop's stock code)")
    quantity: Count = Field(ge=1, le=1_000_000, description="units ordered")
    price: Price = Field(gt=0, le=10_000_000, description="unit price")


class OrderRiskRequest(_In):
    """A basket to score before it is accepted: the customer and the lines."""

    user_id: Id = Field(description="the customer whose past orders and cancellations are read")
    lines: list[RiskLineIn] = Field(min_length=1, max_length=MAX_ITEMS)
    time: datetime | None = Field(default=None, description="when the order is placed (default: now); recency "
                                  "is counted to it")
    country: str | None = Field(default=None, max_length=100, description="the customer's country (default: the "
                                "last one on their past orders)")


class RiskReason(_Out):
    feature: str
    value: float | None = Field(description="the feature's value for this line (null: no history)")
    effect: float = Field(description="how much it raised the log-odds (LightGBM's SHAP value)")
    text: str


class RiskLineOut(_Out):
    item_id: str
    quantity: int
    price: float
    probability: float = Field(description="probability that the line is cancelled within the model's horizon")
    known_item: bool = Field(description="whether the product has past orders in the model's history")
    reasons: list[RiskReason] = Field(description="the features that raised the probability most")


class OrderRiskResponse(_Out):
    user_id: str
    known_customer: bool
    time: str
    basket_probability: float = Field(description="probability that at least one line is cancelled (lines "
                                      "taken as independent)")
    lines: list[RiskLineOut]
    model: dict = Field(description="the model: when it was fitted, the end of its data, its horizon, and its "
                        "test AUC-ROC / AUC-PR")


class UnusualEventOut(_Out):
    user_id: str
    session: str
    type: str
    item_id: str | None
    at: str = Field(description="the event's time (UTC, ISO 8601)")
    score: float = Field(description="noisy-or of the rules' strengths, in [0, 1]")
    reasons: list[dict] = Field(description="the rules that fired: rule, strength, detail")


class UnusualEventsResponse(_Out):
    users_tracked: int = Field(description="customers whose recent events this process keeps")
    threshold: float = Field(description="score at and above which an event is flagged")
    flagged: list[UnusualEventOut]
