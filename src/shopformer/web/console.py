"""The operator console: ``/console``, one page for the people who run the engine.

What it shows: the served model (name, version, run folder, load time, retrieval), its
validation and test metrics and the baselines beside it (results files found next to the
run folder, see :func:`find_results`), its training curve (``model/training.json``),
live request rate and latency per route (the app's own Prometheus objects, polled every
2 s through ``/console/live``), the latest stored events, catalog size, the latest audit
log entries, a reload button, and one customer's explanation as a history x items
heatmap (the attribution matrix the API's ``explain=true`` reasons come from).

Access. When the server has any API key the console needs an ``admin`` key: the login
form takes it, checks it with the app's :class:`~shopformer.serve.access.KeyRing` (the
same check as ``X-API-Key``, through :func:`~shopformer.serve.access.authorize`), and
keeps it in a cookie that is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no
other site's page sends it), ``Path=/console`` and ``Secure`` over HTTPS. The key is
checked again on every request, so a revoked key is out at once (or within
``SHOPFORMER_SYNC_S`` on other processes); it is never written into a page. With no key
at all and ``SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES=1`` (the local demo) the console is
open, as the admin API is; with no key and no such flag it answers 503, as the admin API
does. An ``X-API-Key`` header with an admin key works as well (scripts).

CSRF. Every POST (login, logout, reload) must come from this server's pages: the host
of the ``Origin`` header (or, when a browser sends none, of the ``Referer``) must be
the request's ``Host``, else 403 (the storefront's rule). Together with
``SameSite=Strict`` (another site's page cannot send the cookie at all) this is the
protection, no token; behind a proxy, forward the ``Host`` header unchanged so the two
agree. Pages also send ``frame-ancestors 'none'`` (no clickjacking of the
reload button), a strict Content-Security-Policy (scripts and styles from this origin
only) and ``Cache-Control: no-store``.

Reload calls the admin API's own route function (:func:`shopformer.serve.routes.admin.
reload_model`): the same service reload, metrics and audit entry as ``POST
/v1/admin/reload``. Logins are written to the audit log as ``console-login``.

Live numbers come from this process's metrics: with ``--workers N`` each worker answers
for itself (scrape ``/metrics`` of every process for the whole picture). The console's
own requests are left out of the table.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from shopformer.explain.sentence import label
from shopformer.serve.access import INVALID, Principal, audit, authorize
from shopformer.serve.recommender import NoModelError, Served
from shopformer.store.access import ADMIN, latest_audit_entries
from shopformer.types import EVENT_TYPES

from .access import from_this_server

log = logging.getLogger("shopformer.web")

router = APIRouter(prefix="/console", include_in_schema=False)

#: the cookie that holds the admin key (HttpOnly, SameSite=Strict, Path=/console)
COOKIE = "shopformer_console"
COOKIE_MAX_AGE_S = 8 * 3600
#: the live table's window: request rate and percentiles over about the last 10 s
LIVE_WINDOW_S = 10.0
RECENT_EVENTS = 15
RECENT_AUDIT = 10
#: the console's own routes and static files are not listed in the live table (static
#: files are counted as "<unmatched>": a mount sets no route template)
HIDDEN_ROUTES = ("/console", "/static", "<unmatched>")
#: results files larger than this are not read
MAX_RESULTS_BYTES = 5 << 20
#: metric columns of the comparison table, when the records have them
METRIC_COLUMNS = ("HR@10", "NDCG@10", "Recall@10", "MRR", "Coverage@10")
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@functools.cache
def templates():  # noqa: ANN201 - a Jinja2Templates, built on first use (nothing at import time)
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _render(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
    response = templates().TemplateResponse(request, name, context, status_code=status)
    response.headers.update(HEADERS)
    return response


# -- access --------------------------------------------------------------------------
def _open(request: Request) -> bool:
    """No key configured at all: the console is open exactly when the admin API is."""
    return not request.app.state.keyring.configured


def admin_principal(request: Request) -> Principal:
    """:func:`authorize` for the ``admin`` scope, with the console's cookie standing in
    for a missing ``X-API-Key`` header. Raises HTTPException 401/403/503."""
    state = request.scope.setdefault("state", {})
    if state.get("principal") is None:
        key = request.cookies.get(COOKIE)
        if key:
            state["principal"] = request.app.state.keyring.authenticate(key)
    return authorize(request, ADMIN)


def _check_origin(request: Request) -> None:
    if not from_this_server(request):
        raise HTTPException(403, "cross-site request refused: the Origin header must be this server's")


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the login form) as a dict. The app's
    body limit bounds what is read."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303, headers=HEADERS)


def _refused(request: Request, exc: HTTPException) -> Response:
    """A page request the caller may not make: to the login form (401/403), or a page
    saying why the console is closed (503: no key configured, writes not allowed)."""
    if exc.status_code in (401, 403):
        return _login_redirect()
    return _render(request, "console/closed.html", {"detail": exc.detail}, exc.status_code)


# -- what the page shows ---------------------------------------------------------------
def model_card(served: Served | None) -> dict | None:
    if served is None:
        return None
    info = served.run.info
    return {
        "name": served.name,
        "version": served.version,
        "folder": str(served.run.folder),
        "loaded_at": served.loaded_at.isoformat(timespec="seconds"),
        "retrieval": served.retrieval,
        "n_items": served.n_items,
        "n_users": len(served.run.users),
        "fit_on": info.get("fit_on"),
        "fit_seconds": info.get("fit_seconds"),
        "dataset": _counts(info.get("dataset")),
        "data_dir": info.get("data_dir"),
    }


def _counts(value: Any) -> str | None:
    """``{"users": 12, "items": 15}`` as "12 users, 15 items"; other values as text."""
    if isinstance(value, dict):
        return ", ".join(f"{v:,} {k}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items())
    return None if value is None else str(value)


def line_chart(points: list[tuple[float, float]], width: int = 480, height: int = 150,
               best_x: float | None = None) -> dict | None:
    """Coordinates for an inline SVG line chart of ``(x, y)`` points (non-finite y
    dropped): a polyline, dots, axis labels; None when nothing is left to draw."""
    pts = [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(y)]
    if not pts:
        return None
    left, right, top, bottom = 56, 12, 10, 26
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1.0), y1 + (abs(y1) * 0.1 or 1.0)

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1.0) * (width - left - right)

    def py(y: float) -> float:
        return top + (1.0 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    dots = [{"x": round(px(x), 1), "y": round(py(y), 1), "label": f"epoch {x:g}: {y:.4g}"} for x, y in pts]
    best = None
    if best_x is not None:
        found = [d for (x, _), d in zip(pts, dots) if x == best_x]
        best = found[0] if found else None
    return {
        "width": width, "height": height, "left": left, "right": width - right, "top": top,
        "bottom": height - bottom, "points": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots,
        "y_max": f"{y1:.4g}", "y_min": f"{y0:.4g}", "x_min": f"{x0:g}", "x_max": f"{x1:g}", "best": best,
    }


def training_curve(run_folder: Path) -> dict | None:
    """The run's training curve (``model/training.json``, written by the Transformers),
    with a chart per series; None when the run has none (the baselines)."""
    path = Path(run_folder) / "model" / "training.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    records = [r for r in raw.get("records") or [] if isinstance(r, dict) and "epoch" in r]
    if not records:
        return None
    best_epoch = raw.get("best_epoch")
    best_valid = raw.get("best_valid")
    return {
        "file": str(path),
        "best_epoch": best_epoch,
        "best_valid": best_valid if isinstance(best_valid, (int, float)) and math.isfinite(best_valid) else None,
        "stopped": raw.get("stopped") or "",
        "records": records,
        "loss": line_chart([(r["epoch"], r.get("loss")) for r in records]),
        "valid": line_chart([(r["epoch"], r.get("valid")) for r in records], best_x=best_epoch),
    }


def _records(path: Path) -> list[dict]:
    """Evaluation records in a results file (``write_results``: a list of records with
    ``model`` and ``metrics``); [] for anything else."""
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            return []
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    raw = raw if isinstance(raw, list) else [raw]
    return [r for r in raw if isinstance(r, dict) and isinstance(r.get("metrics"), dict) and r.get("model")]


def find_results(run_folder: Path) -> list[dict]:
    """Results files that evaluate this run or its siblings: ``RUN/*.json`` and
    ``results/*.json`` in the run folder, beside it and one level up (where
    ``shopformer demo`` puts ``results/demo.json`` for ``runs/<best>``, and where
    ``shopformer evaluate`` writes ``results/<model>_<split>.json`` when run from the
    folder holding ``runs/``). Newest file first: ``[{"file", "records"}]``."""
    run_folder = Path(run_folder)
    places = [run_folder, run_folder / "results", run_folder.parent / "results", run_folder.parent.parent / "results"]
    seen: set[Path] = set()
    found = []
    for place in places:
        try:
            files = sorted(place.glob("*.json"))
        except OSError:
            continue
        for f in files:
            real = f.resolve()
            if real in seen or f.name in ("run.json", "items.json", "users.json"):
                continue
            seen.add(real)
            records = _records(f)
            if records:
                found.append({"file": str(f), "records": records, "mtime": f.stat().st_mtime})
    return sorted(found, key=lambda x: -x["mtime"])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)


def evaluation(served: Served | None) -> dict:
    """The served model's metrics per split and the comparison table, from the results
    files found for its run."""
    if served is None:
        return {"served": [], "comparison": [], "files": [], "columns": []}
    files = find_results(served.run.folder)
    data_dir = served.run.info.get("data_dir")
    rows = []
    for f in files:
        for r in f["records"]:
            rows.append({"model": str(r["model"]), "split": str(r.get("split", "")), "metrics": r["metrics"],
                         "dataset": r.get("dataset"), "date": str(r.get("date", ""))[:19], "file": f["file"],
                         "served": r["model"] == served.name})
    columns = [c for c in METRIC_COLUMNS if any(c in r["metrics"] for r in rows)]
    for r in rows:
        r["values"] = [_fmt(r["metrics"].get(c)) for c in columns]
    # the served model's own rows: same model name, preferring records of its own data folder
    mine = [r for r in rows if r["served"]]
    own_data = [r for r in mine if r["dataset"] == data_dir]
    mine = own_data or mine
    served_rows, splits = [], set()
    for r in mine:  # newest file first: the first record of each split
        if r["split"] not in splits:
            splits.add(r["split"])
            served_rows.append(r)
    order = {"valid": 0, "test": 1}
    served_rows.sort(key=lambda r: order.get(r["split"], 2))
    comparison = sorted(rows, key=lambda r: (order.get(r["split"], 2), r["file"], r["model"]))
    return {"served": served_rows, "comparison": comparison, "files": [f["file"] for f in files], "columns": columns}


def recent_events(request: Request, limit: int = RECENT_EVENTS) -> list[dict]:
    """The latest stored events, newest first, with product titles."""
    store = request.app.state.service.store
    newest = store.max_position()
    if newest <= 0:
        return []
    frame = store.events(since_position=max(0, newest - limit))
    rows = frame.tail(limit).reverse().to_dicts()
    ids = sorted({r["item_id"] for r in rows if r.get("item_id")})
    titles: dict[str, str | None] = {}
    if ids:
        products = store.products(ids, columns=("item_id", "title"))
        titles = dict(zip(products["item_id"].to_list(), products["title"].to_list()))
    out = []
    for r in rows:
        ts = r.get("timestamp")
        out.append({
            "time": ts.isoformat(timespec="seconds") if isinstance(ts, datetime) else "",
            "user_id": r.get("user_id") or "", "type": r.get("event_type") or "", "item_id": r.get("item_id") or "",
            "title": titles.get(r.get("item_id") or "") or "", "query": r.get("query") or "",
        })
    return out


def recent_audit(request: Request, limit: int = RECENT_AUDIT) -> list[dict]:
    out = []
    for e in latest_audit_entries(request.app.state.service.store, limit):
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(e.detail.items()) if v is not None)
        out.append({"at": e.at.isoformat(timespec="seconds"), "actor": e.actor, "action": e.action,
                    "target": e.target or "", "outcome": e.outcome, "detail": detail[:200], "client": e.client or ""})
    return out


# -- live request rate and latency -----------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """Cumulative per-route numbers of the app's metrics at one moment."""

    t: float
    #: (method, route) -> (requests, cumulative bucket counts in the histogram's order)
    latency: dict[tuple[str, str], tuple[float, tuple[float, ...]]]
    bounds: tuple[float, ...]
    #: (method, route) -> answers with a 5xx status
    errors: dict[tuple[str, str], float]


def snapshot(metrics: Any, now: float | None = None) -> Snapshot:
    """Read the request histogram and counter of :class:`shopformer.serve.metrics.Metrics`."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    counts: dict[tuple[str, str], float] = {}
    for family in metrics.latency.collect():
        for s in family.samples:
            key = (s.labels.get("method", ""), s.labels.get("route", ""))
            if s.name.endswith("_bucket"):
                buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                counts[key] = s.value
    errors: dict[tuple[str, str], float] = {}
    for family in metrics.requests.collect():
        for s in family.samples:
            if s.name.endswith("_total") and s.labels.get("status", "").startswith("5"):
                key = (s.labels.get("method", ""), s.labels.get("route", ""))
                errors[key] = errors.get(key, 0.0) + s.value
    bounds: tuple[float, ...] = ()
    latency = {}
    for key, pairs in buckets.items():
        pairs.sort()
        bounds = tuple(b for b, _ in pairs)
        latency[key] = (counts.get(key, pairs[-1][1]), tuple(c for _, c in pairs))
    return Snapshot(time.monotonic() if now is None else now, latency, bounds, errors)


def quantile(q: float, bounds: tuple[float, ...], cumulative: tuple[float, ...]) -> float | None:
    """The ``q`` quantile of a histogram (cumulative counts per upper bound, the last
    +Inf) by linear interpolation inside the bucket, as Prometheus'
    ``histogram_quantile``; the last finite bound when it falls in the +Inf bucket;
    None for an empty histogram."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, cumulative):
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class LiveWindow:
    """The snapshots the console's polls took (one app, shared by every viewer): the
    table compares now with the snapshot about :data:`LIVE_WINDOW_S` old."""

    def __init__(self, window_s: float = LIVE_WINDOW_S, keep_s: float = 60.0) -> None:
        self.window_s = window_s
        self.keep_s = keep_s
        self._snaps: deque[Snapshot] = deque()
        self._lock = threading.Lock()

    def baseline(self, now: Snapshot) -> Snapshot | None:
        """The snapshot to compare ``now`` with (the latest at least a window old, else
        the oldest one at least half a second old); records ``now``."""
        with self._lock:
            base = None
            for s in self._snaps:
                if s.t <= now.t - self.window_s:
                    base = s
            if base is None and self._snaps and now.t - self._snaps[0].t >= 0.5:
                base = self._snaps[0]
            if not self._snaps or now.t - self._snaps[-1].t >= 1.0:
                self._snaps.append(now)
            while len(self._snaps) > 1 and self._snaps[0].t < now.t - self.keep_s:
                self._snaps.popleft()
            return base


def live_window(request: Request) -> LiveWindow:
    window = getattr(request.app.state, "console_live", None)
    if window is None:
        window = request.app.state.console_live = LiveWindow()
    return window


def live_rows(now: Snapshot, base: Snapshot | None) -> list[dict]:
    """Per route (the console's own left out): requests per second and p50 / p95 over
    the window since ``base``, total requests and 5xx answers since start."""
    rows = []
    dt = (now.t - base.t) if base is not None else 0.0
    for (method, route), (count, cumulative) in now.latency.items():
        if route.startswith(HIDDEN_ROUTES):
            continue
        row: dict[str, Any] = {"route": f"{method} {route}", "total": int(count),
                               "errors": int(now.errors.get((method, route), 0)), "rate": None, "p50_ms": None,
                               "p95_ms": None}
        if base is not None and dt > 0:
            before = base.latency.get((method, route))
            old_count, old_cum = before if before is not None else (0.0, (0.0,) * len(cumulative))
            delta = tuple(c - o for c, o in zip(cumulative, old_cum))
            row["rate"] = round(max(0.0, count - old_count) / dt, 2)
            for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95)):
                v = quantile(q, now.bounds, delta)
                row[name] = None if v is None else round(v * 1000, 1)
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["total"], r["route"]))


def live(request: Request) -> dict:
    """What ``/console/live`` answers (and the page starts with)."""
    now = snapshot(request.app.state.metrics)
    base = live_window(request).baseline(now)
    service = request.app.state.service
    card = model_card(service.served)
    return {
        "window_s": round(now.t - base.t, 1) if base is not None else None,
        "routes": live_rows(now, base),
        "events": recent_events(request),
        "model": None if card is None else {k: card[k] for k in ("name", "version", "loaded_at", "folder",
                                                                 "retrieval")},
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# -- the explanation heatmap -------------------------------------------------------------
#: colour steps of the heatmap each side of zero (CSS classes h-n4 .. h-p4)
HEAT_STEPS = 4


def heatmap(request: Request, user_id: str, k: int = 10) -> dict:
    """One customer's top-``k`` as the API's ``explain=true`` computes it, with the
    attribution matrix: rows the occluded history events (oldest first), columns the
    recommended items (best first), each cell the event's share of the item's score and
    a colour step (red raised it, blue lowered it)."""
    from shopformer.serve.explanations import explain_result

    service = request.app.state.service
    served = service.require()
    ranked, n = service.recommend_user(served, user_id, k, True, None)
    history = service.history(served, user_id).sequences
    out: dict[str, Any] = {"user_id": user_id, "history_length": n, "strategy": ranked.strategy, "rows": [],
                           "items": [], "model": served.version}
    result = explain_result(request.app.state.explainers, service, served, history, ranked, True, None)
    if result is None:
        return out
    att = result.attribution
    ids = result.history_ids
    wanted = sorted({ids[p] for p in att.positions.tolist()} | {x.item_id for x in result.items})
    titles = service.titles(wanted)
    out["items"] = [{"rank": j + 1, "item_id": x.item_id, "label": label(x.item_id, titles.get(x.item_id)),
                     "score": f"{x.score:.4g}", "sentence": x.sentence} for j, x in enumerate(result.items)]
    values = np.nan_to_num(np.asarray(att.values, dtype=np.float64))
    shares = att.shares()
    limit = float(np.abs(values).max()) if values.size else 0.0
    row = history.rows(np.array([0])).without_padding()
    kinds = [] if row.event_types is None else [EVENT_TYPES[int(t)] for t in row.event_types]
    for e, p in enumerate(att.positions.tolist()):
        cells = []
        for j in range(values.shape[1]):
            v, share = float(values[e, j]), float(shares[e, j])
            step = int(round(HEAT_STEPS * v / limit)) if limit > 0 else 0
            css = f"h-p{step}" if step > 0 else f"h-n{-step}" if step < 0 else "h-0"
            text = f"{share:.0%}" if share >= 0.005 else ("−" if step < 0 else "")
            cells.append({"css": css, "text": text, "title": f"attribution {v:+.4g}, share {share:.1%}"})
        out["rows"].append({"position": p + 1, "item_id": ids[p], "label": label(ids[p], titles.get(ids[p])),
                            "kind": kinds[p] if p < len(kinds) else "", "cells": cells})
    out["occluded"] = len(att.positions)
    return out


def _explain_context(request: Request, user_id: str | None) -> dict | None:
    if not user_id:
        return None
    user_id = user_id.strip()
    if not user_id or len(user_id) > 256:
        return {"error": "give a customer id of 1 to 256 characters", "user_id": user_id[:256]}
    try:
        return heatmap(request, user_id)
    except NoModelError as exc:
        return {"error": str(exc), "user_id": user_id}


# -- routes ------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def console_page(request: Request, user_id: str | None = Query(None, max_length=256)) -> Response:
    """The console (the login form when a key is needed and none is given)."""
    try:
        admin_principal(request)
    except HTTPException as exc:
        return _refused(request, exc)
    service = request.app.state.service
    served = service.served
    store = service.store
    context = {
        "open": _open(request),
        "model": model_card(served),
        "training": training_curve(served.run.folder) if served is not None else None,
        "evaluation": evaluation(served),
        "catalog": {"products": store.count_products(), "events": store.count_events(),
                    "model_items": served.n_items if served is not None else None},
        "live": live(request),
        "audit": recent_audit(request),
        "explain": _explain_context(request, user_id),
        "user_id": user_id or "",
        "reloaded": request.query_params.get("reloaded"),
    }
    return _render(request, "console/index.html", context)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    if _open(request):
        return RedirectResponse("/console", status_code=303, headers=HEADERS)
    return _render(request, "console/login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key; an admin key gets the cookie and the console."""
    _check_origin(request)
    if _open(request):
        return RedirectResponse("/console", status_code=303, headers=HEADERS)
    key = (await _form(request)).get("api_key", "").strip()
    principal = request.app.state.keyring.authenticate(key) if key else INVALID
    if principal is INVALID:
        return _render(request, "console/login.html", {"error": "This key is not valid (unknown or revoked)."}, 401)
    if not principal.allows(ADMIN):
        scopes = ", ".join(sorted(principal.scopes)) or "none"
        return _render(request, "console/login.html", {
            "error": f"This key ({principal.key_id}) has the scopes {scopes}; the console needs an admin key."}, 403)
    response = RedirectResponse("/console", status_code=303, headers=HEADERS)
    response.set_cookie(COOKIE, key, max_age=COOKIE_MAX_AGE_S, path="/console", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    audit(request, principal, "console-login", None, "ok")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    _check_origin(request)
    response = _login_redirect()
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


@router.post("/reload")
def reload(request: Request) -> Response:
    """Reload the served run from its folder, as ``POST /v1/admin/reload`` with no body
    does (that route's own function: same service reload, metrics and audit entry).
    JSON for the page's script; a redirect back to the console for a plain form post."""
    from shopformer.serve.routes.admin import reload_model

    _check_origin(request)
    try:
        principal = admin_principal(request)
    except HTTPException as exc:
        if _wants_json(request):
            raise
        return _refused(request, exc)
    try:
        answer = reload_model(request, principal, request.app.state.service, request.app.state.metrics, None)
    except HTTPException as exc:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=HEADERS)
        return _render(request, "console/closed.html", {"detail": exc.detail}, exc.status_code)
    if _wants_json(request):
        body = answer.model_dump(mode="json")
        return JSONResponse(body, headers=HEADERS)
    return RedirectResponse(f"/console?reloaded={answer.model.version}", status_code=303, headers=HEADERS)


@router.get("/live")
def live_json(request: Request) -> Response:
    """Request rate and latency per route, the latest events, the served model (JSON)."""
    admin_principal(request)
    return JSONResponse(live(request), headers=HEADERS)


@router.get("/explain", response_class=HTMLResponse)
def explain_fragment(request: Request, user_id: str = Query(..., max_length=256)) -> Response:
    """The heatmap section alone (the page's script swaps it in)."""
    admin_principal(request)
    return _render(request, "console/_heatmap.html", {"explain": _explain_context(request, user_id)})
