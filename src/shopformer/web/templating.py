"""The pages' Jinja2 environment (autoescaped; made on first use, not at import) and
the response helpers that add the page headers (CSP and friends, see :mod:`.access`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from . import TEMPLATES
from .access import PAGE_HEADERS


def _percent(value: float) -> str:
    return f"{100 * float(value):.0f}%"


def _kind(event_type: str | None) -> str:
    return {"view": "viewed", "click": "clicked", "add_to_cart": "added to cart", "purchase": "bought",
            "remove_from_cart": "removed from cart", "rate": "rated"}.get(event_type or "", event_type or "touched")


@cache
def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=str(TEMPLATES))
    found.env.filters["percent"] = _percent
    found.env.filters["did"] = _kind
    found.env.trim_blocks = found.env.lstrip_blocks = True
    return found


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A rendered template with the page headers."""
    response = templates().TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(PAGE_HEADERS)
    return response


def fragment(request: Request, name: str, context: dict[str, Any]) -> str:
    """A rendered template as text (a part of a page, sent inside a JSON answer)."""
    return templates().get_template(name).render({"request": request, **context})
