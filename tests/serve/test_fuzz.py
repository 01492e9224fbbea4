"""Schemathesis fuzz of the OpenAPI spec, in process (ASGI transport, no network).

Every operation gets schema-valid and schema-violating inputs (derandomized: the same
cases every CI run) and every Schemathesis check but two, which cannot hold for this API:

* ``positive_data_acceptance``: the API refuses some schema-valid input by design, with
  a 4xx naming the field (a price range with min above max, an item id missing from a
  non-search event, a timestamp outside the window, a run folder that does not exist);
* ``negative_data_rejection`` for GET routes: query and path values are text on the
  wire, so a generated ``false`` or ``0`` for a text parameter arrives as the valid text
  ``"false"``.

What Schemathesis does not generate is added by the second and third tests: a
non-finite number (``NaN``, ``Infinity``, ``1e400``) put in place of any value of a
generated body must be a 422 naming that value (or a field holding it), and a body over
the limit a 413, whether its length is announced or streamed. Never a 500.
"""

from __future__ import annotations

import json
import random
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402
from test_api import AUTH, KEY, shop  # noqa: E402, F401 - fixtures

from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

#: examples per operation and mode: the whole file runs in ~20 s on 2 CPUs
EXAMPLES = 20
OPERATIONS = [
    "GET /v1/users/{user_id}/recommendations", "POST /v1/recommendations/session", "GET /v1/items/{item_id}/similar",
    "GET /v1/search", "GET /v1/search/suggest", "POST /v1/events", "POST /v1/events:batch", "GET /v1/users/{user_id}",
    "GET /v1/items/{item_id}", "PUT /v1/catalog/items", "DELETE /v1/catalog/items/{item_id}", "POST /v1/admin/reload",
    "DELETE /v1/users/{user_id}", "GET /v1/users/{user_id}/export", "GET /health", "GET /metrics",
    "POST /v1/admin/keys", "GET /v1/admin/keys", "DELETE /v1/admin/keys/{key_id}", "GET /v1/admin/audit",
    "POST /v1/admin/experiments", "GET /v1/admin/experiments", "POST /v1/admin/experiments/{name}/stop",
    "GET /v1/admin/experiments/{name}/report",
    "POST /v1/admin/rules", "GET /v1/admin/rules", "DELETE /v1/admin/rules/{rule_id}",
    "GET /v1/items/{item_id}/complements", "POST /v1/recommendations/cart",
    "GET /v1/items/{item_id}/audience", "GET /v1/audience",
    "GET /v1/forecast/items/{item_id}",  # sales forecasts (404 here: no SHOPFORMER_FORECAST_DIR)
    "POST /v1/answers",  # customer-service answers (404 here: no SHOPFORMER_ANSWERS_DIR)
    "POST /v1/risk/orders",  # order risk (404 here: no SHOPFORMER_RISK_DIR)
    "GET /v1/admin/risk/unusual",  # the stream watch's flagged events
    "GET /v1/admin/impressions", "PUT /v1/admin/impressions",  # pausing impression logging
]
#: operations that read a body (stopping an experiment is a POST without one)
BODY_OPERATIONS = [op for op in OPERATIONS if op.split()[0] in ("POST", "PUT") and not op.endswith("/stop")]
#: (operation, mode): invalid input for every operation that takes any
FUZZ = [pytest.param(op, mode, id=f"{op}-{'valid' if mode is GenerationMode.POSITIVE else 'invalid'}")
        for op in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or op not in ("GET /health", "GET /metrics")]
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _app(shop, tmp_path_factory, **kw):  # noqa: F811
    root = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{root / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    return create_app(ServeSettings(store_url=url, run=shop["run1"], api_key=KEY, sync_s=0,
                                    search_dir=root / "search", search_semantic=False, **kw))


@pytest.fixture(scope="module")
def api(shop, tmp_path_factory):  # noqa: F811
    schema = schemathesis.openapi.from_asgi("/openapi.json", _app(shop, tmp_path_factory))
    return {r.ok().label: r.ok() for r in schema.get_all_operations()}


def _search_ready(api) -> None:
    """Schemathesis starts the app (its lifespan) for each test: the search index is
    built in the background then, and answers 503 until it is ready."""
    search = api["GET /v1/search"].Case(query={"q": "cup"})
    deadline = time.monotonic() + 60
    while (status := search.call().status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200


@pytest.fixture(scope="module")
def small(shop, tmp_path_factory):  # noqa: F811
    """The app with a 4 KiB body limit (8 KiB for batches), through its own test client."""
    with TestClient(_app(shop, tmp_path_factory, max_body_bytes=4096, max_batch_body_bytes=8192)) as c:
        assert c.app.state.search.wait(60)
        yield c


def _checks(method: str) -> list:
    load_all_checks()
    skip = {"positive_data_acceptance"} | ({"negative_data_rejection"} if method == "GET" else set())
    return [c for c in CHECKS.get_all() if c.__name__ not in skip]


def test_every_operation_is_fuzzed(api):
    assert sorted(api) == sorted(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), FUZZ)
def test_fuzz(api, label, mode):
    op = api[label]
    checks = _checks(op.method.upper())
    _search_ready(api)

    @given(case=op.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case):
        # the right key where the case sends one (an invalid case may leave it out: 401)
        case.call_and_validate(headers=AUTH if "X-API-Key" in (case.headers or {}) else None, checks=checks)

    run()


def _leaves(value, path=()):
    """Paths to every scalar in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _replace(value, path, new):
    if not path:
        return new
    out = list(value) if isinstance(value, list) else dict(value)
    out[path[0]] = _replace(value[path[0]], path[1:], new)
    return out


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]


def _union_member(x) -> bool:
    return isinstance(x, str) and (x in ("str", "int", "float", "bool", "none") or "[" in x)


@pytest.mark.parametrize("label", BODY_OPERATIONS)
def test_non_finite_numbers_anywhere_in_a_body_are_a_422_naming_them(api, small, label):
    op = api[label]

    @given(case=op.as_strategy(), pick=st.randoms(use_true_random=False), literal=st.sampled_from(NON_FINITE))
    @SETTINGS
    def run(case, pick: random.Random, literal: str):
        leaves = list(_leaves(case.body)) if isinstance(case.body, dict | list) else []
        if not leaves:
            return
        path = pick.choice(leaves)
        raw = json.dumps(_replace(case.body, path, "\x00MARK\x00")).replace('"\\u0000MARK\\u0000"', literal)
        r = small.request(op.method.upper(), op.path, content=raw,
                          headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code in (413, 422), (raw[:300], r.status_code, r.text[:300])
        if r.status_code == 422:
            # a union-typed field (e.g. a rule's audience: a word or a list of ids) names the
            # member it tried in the location ("str", "list[str]"): not part of the body's path
            named = [tuple(x for x in e["loc"][1:] if not _union_member(x)) for e in r.json()["detail"]
                     if e["loc"][:1] == ["body"]]
            assert any(path[: len(loc)] == loc or loc[: len(path)] == path for loc in named), (path, named)

    run()


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("label", BODY_OPERATIONS)
def test_a_body_over_the_limit_is_a_413(api, small, label, streamed):
    op = api[label]
    limit = 8192 if label.endswith((":batch", "/catalog/items")) else 4096

    @given(case=op.as_strategy())
    @settings(SETTINGS, max_examples=5)
    def run(case):
        raw = json.dumps(case.body).encode() + b" " * (limit + 1)  # still valid JSON
        content = iter([raw[i : i + 1000] for i in range(0, len(raw), 1000)]) if streamed else raw
        r = small.request(op.method.upper(), op.path, content=content,
                          headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413 and f"at most {limit:,} bytes" in r.json()["detail"]

    run()
