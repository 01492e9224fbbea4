"""Request and response bodies of the HTTP API (apart from the store's tables).

Ids are strings (integers are accepted and turned into text, so ``17850`` is
``"17850"``; floats and booleans are refused, so ``NaN`` never becomes the id ``"nan"``),
trimmed, 1..256 characters. Ids that are written (user, item and event ids) must also be
addressable in a URL path: no ``/``, no control characters, not ``.`` or ``..``.
Unknown fields are refused (422 naming the field), so a typo such as ``"usr_id"`` never
silently drops data.

Types are strict where leniency hides client bugs: booleans take only ``true`` /
``false`` (``"explain": 0`` is refused), numbers refuse booleans (``"value": false``;
``3`` and ``"3.5"`` are still numbers), text fields refuse numbers (``"tags": [0]``), and
NaN or infinity (``1e400``) is never a number. Sizes that depend on the settings (event
``context``, product ``attributes``, the timestamp window) are checked in
:mod:`shopformer.serve.writes`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shopformer.types import EVENT_TYPES, unaddressable

from .rerank_schemas import RERANKED_FIELD, RerankOptions, RerankShiftOut

#: largest ``k`` any route accepts
MAX_K = 500
#: largest number of recent events / session items a request may carry
MAX_ITEMS = 1000
#: most categories / tags a product may carry
MAX_LABELS = 100


def _clean_text(value: str) -> str:
    """Refuse text a database cannot store: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text (no lone surrogates)") from None
    return value


def _clean_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        _clean_text(json.dumps(value, ensure_ascii=False, allow_nan=False))
    return value


def _utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are UTC; aware ones are converted to UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00: past year 9999 in UTC
        raise ValueError("is out of range once converted to UTC") from None


def _id_text(value: Any) -> Any:
    """Integer ids become text; floats and booleans are refused (``NaN`` is no id).
    (ValueError, not TypeError: pydantic turns only the former into a 422.)"""
    if isinstance(value, bool | float):
        raise ValueError("an id must be a string or an integer")  # noqa: TRY004
    return str(value) if isinstance(value, int) else value


def _addressable(value: str) -> str:
    why = unaddressable(value)
    if why is not None:
        raise ValueError(why)
    return value


def _not_bool(value: Any) -> Any:
    """Numbers refuse booleans (pydantic would read ``false`` as 0)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")  # noqa: TRY004 - pydantic needs ValueError
    return value


def _id_schema(**text: Any) -> WithJsonSchema:
    """OpenAPI for an id: text (with ``text``'s constraints) or an integer."""
    return WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1, "maxLength": 256, **text},
                                     {"type": "integer"}]})


Id = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256),
    BeforeValidator(_id_text),  # after the constraints, or pydantic checks the length before stripping
    AfterValidator(_clean_text),
    _id_schema(),
]
#: an id that is stored and then looked up through a URL path (the pattern documents
#: :func:`shopformer.types.unaddressable` in OpenAPI; the validator enforces it)
WriteId = Annotated[Id, AfterValidator(_addressable),
                    _id_schema(pattern=r"^(?!\.\.?$)[^/\x00-\x1f\x7f-\x9f]+$")]
Text = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_clean_text)]
# stripped AFTER the length check, as OpenAPI's maxLength says (padding counts)
ShortText = Annotated[str, StringConstraints(max_length=256), AfterValidator(str.strip), AfterValidator(_clean_text)]
#: session ids are ids that are never looked up by path: integers become text too
SessionId = Annotated[ShortText, BeforeValidator(_id_text),
                      WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 256}, {"type": "integer"}]})]
JsonObject = Annotated[dict[str, Any], AfterValidator(_clean_json)]
#: ISO 8601 text (naive = UTC) or Unix time as a number (seconds; milliseconds past 2e10)
UtcDatetime = Annotated[datetime, AfterValidator(_utc), WithJsonSchema(
    {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]})]
Number = Annotated[float, BeforeValidator(_not_bool)]
#: the bound inside the annotation, so OpenAPI shows ``minimum`` (a Field(ge=) beside a
#: validated Annotated type leaked as a non-standard ``ge`` keyword)
Price = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_not_bool)]
Count = Annotated[int, BeforeValidator(_not_bool)]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
#: the id an answer carries (uuid4 hex when this server made it); events name it back
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
RequestId = Annotated[str, StringConstraints(pattern=REQUEST_ID_PATTERN)]
#: where an answer was shown, the caller's own short label (``home``, ``pdp``, ``cart``)
PLACEMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Placement = Annotated[str, StringConstraints(pattern=PLACEMENT_PATTERN)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- events ------------------------------------------------------------------------
class EventIn(_In):
    """One behaviour event. ``type`` (also accepted as ``event_type``) is one of
    ``view, click, add_to_cart, remove_from_cart, purchase, cancel, search, rate``;
    ``item_id`` is required except for ``search``, which requires ``query``.
    ``timestamp`` defaults to now (UTC); naive times are read as UTC; it must fall in
    the window the settings give (SHOPFORMER_MIN_EVENT_TIME, SHOPFORMER_MAX_FUTURE_S).
    Give ``event_id`` to make re-posts idempotent (a stored id with the same payload is
    a no-op; with another payload, 409); without one the store derives an id from the
    event's content (same content + same timestamp = same event).
    ``request_id``: the answer (recommendations, similar items, search) the event came
    from, as that answer gave it; the event is then attributed to the answer, its
    position in it and the model that made it. It is stored in ``context`` under
    ``"request_id"`` (where events ingested from files carry it too).
    ``context.price``: the unit price paid (a purchase's revenue is ``value`` x this
    price; without it, the catalog's price when the revenue is counted)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"user_id": "u42", "item_id": "sku-123", "type": "add_to_cart",
                 "session_id": "s-9", "value": 1}
            ]
        },
    )

    # ``type`` comes before the fields whose rules depend on it (validation order).
    event_id: WriteId | None = None
    user_id: WriteId
    type: EventType = Field(validation_alias=AliasChoices("type", "event_type"))
    item_id: WriteId | None = Field(default=None, validate_default=True)
    timestamp: UtcDatetime | None = None
    session_id: SessionId | None = None
    query: Text | None = Field(default=None, validate_default=True)
    value: Number | None = Field(default=None, allow_inf_nan=False)
    context: JsonObject | None = None
    request_id: RequestId | None = None

    @model_validator(mode="after")
    def _request_id(self) -> EventIn:
        """One request id, given on top or in ``context`` (where it is stored)."""
        inner = (self.context or {}).get("request_id")
        if inner is not None and self.request_id is not None and inner != self.request_id:
            raise ValueError(f"request_id {self.request_id!r} differs from context.request_id {inner!r}")
        if self.request_id is None and isinstance(inner, str):
            self.request_id = inner
        price = (self.context or {}).get("price")
        if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))
                                  or not math.isfinite(price) or price < 0):
            raise ValueError(f"context.price must be a finite number >= 0 (the unit price paid), got {price!r}")
        return self

    @field_validator("item_id")
    @classmethod
    def _item_needed(cls, v: str | None, info: ValidationInfo) -> str | None:
        t = info.data.get("type")
        if v is None and t is not None and t != "search":
            raise ValueError(f"item_id is required when type is {t!r} (only 'search' events have no item)")
        return v

    @field_validator("query")
    @classmethod
    def _query_needed(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("type") == "search" and (v is None or not v.strip()):
            raise ValueError("query is required when type is 'search'")
        return v

    @field_validator("value")
    @classmethod
    def _quantity(cls, v: float | None, info: ValidationInfo) -> float | None:
        t = info.data.get("type")
        if v is not None and v < 0 and t in ("purchase", "add_to_cart", "remove_from_cart", "cancel"):
            raise ValueError(f"value (a quantity) must be >= 0 for type {t!r}")
        return v

    def to_row(self, now: datetime) -> dict[str, Any]:
        """The store's row (``event_type``; ``timestamp`` filled with ``now``)."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.type,
            "timestamp": self.timestamp or now,
            "session_id": self.session_id,
            "query": self.query,
            "value": self.value,
            "context": (self.context if self.request_id is None  # the answer it came from, kept in the context
                        else {**(self.context or {}), "request_id": self.request_id}),
        }


class EventAck(_Out):
    """What was stored. ``status`` is ``created`` or ``duplicate`` (the event_id was
    already stored: nothing changed)."""

    status: Literal["created", "duplicate"]
    event_id: str


class BatchAck(_Out):
    inserted: int
    duplicates: int


class StoredEvent(_Out):
    event_id: str
    item_id: str | None
    type: str
    timestamp: datetime | None
    session_id: str | None = None
    query: str | None = None
    value: float | None = None
    context: dict[str, Any] | None = None
    fingerprint: str = Field(description="sha256 of the canonical stored payload (what a 409 names)")


class ConflictOut(_Out):
    type: Literal["event_id_conflict"]
    loc: list[str | int]
    msg: str
    input: str
    stored_fingerprint: str = Field(description="sha256 of the stored version's canonical payload")
    fields: list[str] = Field(description="payload fields that differ from the stored version")


class ConflictResponse(_Out):
    detail: list[ConflictOut]
    message: str


# -- catalog -----------------------------------------------------------------------
class ProductIn(_In):
    """A product. An upsert REPLACES every field of a stored ``item_id`` (omitted fields
    become empty)."""

    item_id: WriteId
    title: Text | None = None
    description: Text | None = None
    brand: ShortText | None = None
    categories: list[ShortText] | None = Field(default=None, max_length=MAX_LABELS,
                                               description="a path, most general first")
    price: Price | None = None
    currency: ShortText | None = Field(default=None, max_length=16)
    attributes: JsonObject | None = None
    image_uri: Text | None = None
    created_at: UtcDatetime | None = None
    available: StrictBool | None = None
    tags: list[ShortText] | None = Field(default=None, max_length=MAX_LABELS)

    def to_row(self) -> dict[str, Any]:
        return self.model_dump()


class Product(_Out):
    item_id: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    categories: list[str] | None = None
    price: float | None = None
    currency: str | None = None
    attributes: dict[str, Any] | None = None
    image_uri: str | None = None
    created_at: datetime | None = None
    available: bool | None = None
    tags: list[str] | None = None


class UpsertAck(_Out):
    upserted: int
    #: new products the served model now recommends, placed by their content (models
    #: trained with product content only; 0 otherwise)
    placed_in_model: int = 0


# -- recommendations -----------------------------------------------------------------
class ModelInfo(_Out):
    name: str
    version: str = Field(description="run folder name + hash of its run.json")
    run: str
    loaded_at: datetime
    retrieval: str = Field(
        "exact", description='"exact" (whole catalog scored) or "faiss-<kind>" (flat = exact, hnsw = approximate)'
    )


class EventReasonOut(_Out):
    position: int = Field(description="index in the history, 0 = oldest")
    item_id: str
    title: str | None = None
    event_type: str | None = None
    attribution: float = Field(description="score with the history minus score without this event")
    share: float = Field(description="this event's part of the item's positive attribution, 0..1")


class CollaborativeReasonOut(_Out):
    item_id: str = Field(description="the history item")
    title: str | None = None
    customers: int = Field(description="customers who have both this history item and the recommended item")
    verb: str


class SharedAttributeOut(_Out):
    field: str
    value: str
    item_ids: list[str] = Field(description="history items carrying it, most recent first")


class ContentReasonOut(_Out):
    shared: list[SharedAttributeOut] = Field(default_factory=list)
    similar_item_id: str | None = None
    text_similarity: float | None = None


class RuleEffectOut(_Out):
    rule: str
    removed_above: int = Field(description="items the model ranked above this one that the rule removed")


class ProvenanceOut(_Out):
    model_rank: int = Field(description="1-based rank by model score over the whole catalog")
    final_rank: int
    rules: list[RuleEffectOut] = Field(description="rules that moved the item up")
    applied: list[str] = Field(description="every rule this request applied")


class RuleMoveOut(_Out):
    """What a business rule did to an item (see ``/v1/admin/rules``)."""

    rule_id: int
    item_id: str
    effect: Literal["boosted", "buried", "pinned", "excluded"]
    from_rank: int | None = Field(description="rank among the candidates (model order); null: inserted by a pin")
    to_rank: int | None = Field(description="rank in the answer; null: not shown")


#: every answer: the business rules' moves (empty when no rule applied)
RULES_FIELD = Field(default_factory=list, description="what the business rules did: one entry per rule and item "
                                                      "(shown items, and items of the model's top k a rule removed)")


class Explanation(_Out):
    """Why an item was recommended (``explain=true``): (a) the history events that drove
    its score, by occlusion; (b) customers who had a history item and this one; (c)
    shared attributes / text similarity; (d) the rules that moved it; and a sentence."""

    item_id: str
    score: float = Field(description="model score with the whole history")
    events: list[EventReasonOut]
    events_tested: int = Field(description="latest history events occluded")
    history_length: int
    collaborative: list[CollaborativeReasonOut]
    item_customers: int | None = Field(description="customers who have the item; null without interaction data")
    content: ContentReasonOut | None = None
    rules: ProvenanceOut | None = None
    business_rules: list[RuleMoveOut] = Field(default_factory=list, description="business rules that moved this item")
    sentence: str


class ScoredItem(_Out):
    item_id: str
    score: float
    title: str | None = None
    #: only with ``explain=true``; left out of the answer otherwise
    explanation: Explanation | None = Field(default=None, exclude_if=lambda v: v is None)


#: every recommending or search answer names itself (also the ``X-Request-ID`` header)
REQUEST_ID_FIELD = Field(description="this answer's id (also in X-Request-ID): send it with the events it leads to "
                                     "(clicks, carts, purchases) to attribute them to the answer")


class RecommendationResponse(_Out):
    """A ranked list. ``strategy`` is ``history`` (personalised from the events),
    ``popularity`` (no usable history: the model's empty-history scores, or with
    SHOPFORMER_NEW_VISITORS=popular the store's recent counts) or ``trending`` (no
    usable history, SHOPFORMER_NEW_VISITORS=trending)."""

    user_id: str | None = None
    items: list[ScoredItem]
    model: ModelInfo
    strategy: Literal["history", "popularity", "trending"]
    history_length: int = Field(description="history items the model saw (unknown items left out)")
    known_user: bool | None = Field(default=None, description="the user was in the model's training data")
    ignored_item_ids: list[str] = Field(default_factory=list, description="session items unknown to the model")
    request_id: str = REQUEST_ID_FIELD
    rules: list[RuleMoveOut] = RULES_FIELD
    reranked: list[RerankShiftOut] = RERANKED_FIELD
    ignored_event_types: dict[str, int] = Field(
        default_factory=dict,
        description="the user's latest events (SHOPFORMER_HISTORY_LIMIT) that the model does not read, counted by "
        "type: it reads the event types its run was trained with (the run's data config)",
    )


class SimilarResponse(_Out):
    item_id: str
    items: list[ScoredItem]
    model: ModelInfo
    request_id: str = REQUEST_ID_FIELD
    rules: list[RuleMoveOut] = RULES_FIELD


class Filters(_In):
    """Candidate filters over the catalog. ``available_only`` drops items marked
    unavailable (items with unknown availability stay); ``category`` keeps items whose
    category path contains it; a price bound drops items with no price."""

    available_only: StrictBool = False
    category: ShortText | None = None
    min_price: Price | None = None
    max_price: Price | None = None

    @model_validator(mode="after")
    def _range(self) -> Filters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) must be <= max_price ({self.max_price})")
        return self

    @property
    def active(self) -> bool:
        return self.available_only or self.category is not None or self.min_price is not None or self.max_price is not None


class SessionRequest(_In):
    """Recommendations for an anonymous visitor from the items they touched, oldest
    first. Items unknown to the model are ignored (and listed in the answer)."""

    item_ids: list[Id] = Field(max_length=MAX_ITEMS)
    k: Count = Field(default=10, ge=1, le=MAX_K)
    exclude_history: StrictBool = True
    filters: Filters = Field(default_factory=Filters)
    explain: StrictBool = Field(default=False, description="add an explanation to every item")
    placement: Placement | None = Field(default=None, description="where the answer is shown (default: session)")
    session_id: SessionId | None = Field(default=None, description="the visitor's session, kept with the impression")
    rerank: RerankOptions = Field(default_factory=RerankOptions, description="diversity and new-product slots")


# -- lookups -------------------------------------------------------------------------
class ItemResponse(_Out):
    item_id: str
    known_to_model: bool
    product: Product | None = Field(description="null when the item is not in the catalog")


class UserResponse(_Out):
    user_id: str
    known_to_model: bool
    events: list[StoredEvent] = Field(description="most recent first")


# -- privacy -------------------------------------------------------------------------
class ErasureReceiptOut(_Out):
    """An erasure receipt (see :mod:`shopformer.store.erasure`). The store keeps the user
    only as ``user_hash`` (SHA-256 of the id); ``user_id`` is filled in answers to the
    request itself and in the user's own export."""

    receipt_id: int
    user_id: str | None = None
    user_hash: str = Field(description="SHA-256 (hex) of the user id: all the store keeps of it")
    requested_at: datetime
    status: Literal["pending_retrain", "complete"] = Field(
        description="pending_retrain while the served model was trained on the user's events; complete once a "
                    "model trained without them is published (completed_version)")
    removed: dict[str, int] = Field(description="rows deleted per store table")
    event_types: dict[str, int] = Field(description="deleted events by type (search events are the query log)")
    storage: dict[str, Any] = Field(description="what was done to the bytes: secure_delete, WAL checkpoint, VACUUM, "
                                                "and (PostgreSQL) what is out of reach")
    seconds: float
    model_version: str | None = Field(None, description="the model served when the request came")
    model_saw_user: bool | None = Field(None, description="whether that model's training data held the user")
    completed_at: datetime | None = None
    completed_version: str | None = Field(None, description="the model that no longer saw the user")


class ErasureResponse(ErasureReceiptOut):
    caches: dict[str, Any] = Field(description="what this process dropped from memory; other processes follow "
                                               "through the store (see notes)")
    notes: list[str]


class ExportedEvent(_Out):
    position: int
    event_id: str
    item_id: str | None
    type: str
    timestamp: datetime | None
    session_id: str | None = None
    query: str | None = None
    value: float | None = None
    context: Any = Field(None, description="the stored JSON context, decoded (text when it is not JSON)")


class ExportedImpression(_Out):
    request_id: str
    shown_at: datetime
    session_id: str | None = None
    placement: str
    route: str
    model_name: str | None = None
    model_version: str | None = None
    experiment: str | None = None
    variant: str | None = None
    strategy: str | None = None
    item_ids: list[str] = Field(description="the items the answer showed, best first")


class ExportedModel(_Out):
    version: str
    saw_user: bool | None = Field(description="whether the served model's training data held the user")


class UserExport(_Out):
    user_id: str
    exported_at: datetime
    events: list[ExportedEvent] = Field(description="every stored event of the user, oldest first")
    event_counts: dict[str, int]
    impressions: list[ExportedImpression] = Field(default_factory=list,
                                                  description="every stored answer shown to the user, oldest first")
    erasures: list[ErasureReceiptOut]
    model: ExportedModel | None
    outside_the_store: list[str] = Field(description="where else the user's data may be, beyond this answer")


# -- admin -------------------------------------------------------------------------
class ReloadRequest(_In):
    run: Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_clean_text)] | None = Field(
        default=None, description="run folder to load; default: the folder served now"
    )


class ReloadResponse(_Out):
    model: ModelInfo
    previous: ModelInfo | None


Scope = Literal["read", "write", "admin"]


def _rate_limit(text: str) -> str:
    from shopformer.store.access import check_rate_limit

    return check_rate_limit(text)  # its AccessError is a ValueError: a 422 naming the field


class KeyRequest(_In):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
                    AfterValidator(_clean_text)] = Field(description="who or what uses the key")
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)] = Field(
        description="read: customers' data; write: events and catalog; admin: everything, incl. keys and audit")
    rate_limit: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                          AfterValidator(_rate_limit)] | None = Field(
        default=None, description="this key's budget, e.g. '100/second' or '20/second;1000/minute' "
                                  "(default: the server's SHOPFORMER_RATE_LIMIT)")


class KeyOut(_Out):
    key_id: str
    name: str
    scopes: list[str]
    rate_limit: str | None
    created_at: datetime
    revoked_at: datetime | None


class NewKey(KeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a SHA-256")


class AuditEntryOut(_Out):
    entry_id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]
    client: str | None


class AuditLog(_Out):
    entries: list[AuditEntryOut]
    next_after: int = Field(description="pass as `after` for the next page")


class Health(_Out):
    status: Literal["ok", "degraded"]
    store: str
    model: ModelInfo | None
    detail: str | None = None
    #: the pages' start-up warm-up (building the caches first visitors need, in the
    #: background): "running", then "done"; None without the pages. Answers are served
    #: meanwhile, but on a large catalog more slowly (it competes for the CPU)
    warm_up: Literal["running", "done"] | None = None


class ErrorResponse(_Out):
    detail: Any


# -- search ------------------------------------------------------------------------
class SearchItem(_Out):
    item_id: str
    title: str | None = None
    score: float = Field(description="the final ranking score (higher is better)")
    lexical: float = Field(description="the lexical engine's score (0 when no word matched)")
    cosine: float = Field(description="cosine of the query's and the product's text vectors (0 without vectors)")


class FacetValue(_Out):
    value: str
    count: int


class PriceBand(_Out):
    min: float
    max: float
    count: int


class Facets(_Out):
    """Counts over the top ``facet_depth`` results (before ``k`` cuts them)."""

    categories: list[FacetValue]
    brands: list[FacetValue]
    price: list[PriceBand]
    available: dict[str, int]


class SearchResponse(_Out):
    query: str
    corrected_query: str | None = Field(description="the query as searched, when spelling was corrected")
    strategy: str = Field(description='"lexical" or "hybrid", "+rerank", "+personal"; "no_terms" for nothing searchable')
    items: list[SearchItem]
    facets: Facets
    candidates: int = Field(description="products the engines proposed before ranking")
    user_id: str | None = None
    model: ModelInfo | None = Field(default=None, description="the model that personalized the order, if any")
    request_id: str = REQUEST_ID_FIELD
    rules: list[RuleMoveOut] = RULES_FIELD


class SuggestionOut(_Out):
    text: str
    kind: Literal["query", "completion", "product"]
    count: int = Field(description="times searched (query), products using the completing word (completion), 0 (product)")
    item_id: str | None = Field(default=None, description="the product, for kind product",
                                exclude_if=lambda v: v is None)


class SuggestResponse(_Out):
    query: str
    suggestions: list[SuggestionOut]


class DeleteAck(_Out):
    deleted: int = Field(description="products removed from the catalog (0 when it was not there)")
