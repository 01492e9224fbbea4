"""Catalog: item lookup and upsert."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request

from ..deps import get_metrics, get_service, get_settings, get_write_limits, require_write
from ..metrics import Metrics
from ..recommender import RecommendationService
from ..schemas import DeleteAck, ErrorResponse, ItemResponse, Product, ProductIn, UpsertAck
from ..settings import ServeSettings
from ..writes import WriteLimits, write_products
from .events import WRITE_ERRORS

router = APIRouter(prefix="/v1")


@router.get(
    "/items/{item_id}",
    response_model=ItemResponse,
    tags=["lookup"],
    responses={404: {"model": ErrorResponse, "description": "unknown item"}},
)
def get_item(
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> ItemResponse:
    """The catalog entry of an item and whether the served model knows it."""
    served = service.served
    known = served is not None and item_id in served.run.items
    row = service.store.get_product(item_id)
    if row is None and not known:
        raise HTTPException(404, f"item {item_id!r} is neither in the catalog nor known to the model")
    product = None
    if row is not None:
        attrs = row.get("attributes")
        try:
            row["attributes"] = json.loads(attrs) if attrs else None
        except ValueError:
            row["attributes"] = {"raw": attrs}
        if not isinstance(row["attributes"], dict | None):
            row["attributes"] = {"value": row["attributes"]}
        product = Product(**row)
    return ItemResponse(item_id=item_id, known_to_model=known, product=product)


@router.put(
    "/catalog/items",
    response_model=UpsertAck,
    tags=["catalog"],
    dependencies=[Depends(require_write)],
    responses=WRITE_ERRORS,
)
def upsert_items(
    request: Request,
    products: Annotated[list[ProductIn], Body(min_length=1)],
    service: Annotated[RecommendationService, Depends(get_service)],
    settings: Annotated[ServeSettings, Depends(get_settings)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    limits: Annotated[WriteLimits, Depends(get_write_limits)],
) -> UpsertAck:
    """Insert or replace products, all in one transaction (an item_id given twice: the
    last row wins). One invalid row refuses the batch; nothing is written then."""
    if len(products) > settings.max_batch:
        raise HTTPException(413, f"batch of {len(products)} products exceeds the limit of {settings.max_batch}")
    n = write_products(service.store, products, limits)
    service.invalidate_catalog()
    ids = [p.item_id for p in products]
    placed = service.place_new_products(ids)
    if request.app.state.search is not None:  # searchable (with its new text) before this returns
        request.app.state.search.catalog_changed("upsert", ids)
    metrics.products.inc(n)
    return UpsertAck(upserted=n, placed_in_model=placed)


@router.delete(
    "/catalog/items/{item_id}",
    response_model=DeleteAck,
    tags=["catalog"],
    dependencies=[Depends(require_write)],
    responses=WRITE_ERRORS,
)
def delete_item(
    request: Request,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> DeleteAck:
    """Remove a product from the catalog (its events are kept). Search never returns it
    after this answers; recommendations stop carrying its catalog data (filters that
    need product data leave it out)."""
    n = service.store.delete_products([item_id])
    service.invalidate_catalog()
    if request.app.state.search is not None:
        request.app.state.search.catalog_changed("delete", [item_id])
    return DeleteAck(deleted=n)
