"""API abuse: the server's memory under maximum-size bodies, and a large Schemathesis fuzz
of the OpenAPI spec (issue 17's targets).

``--part memory``: starts the real server (``shopformer serve --no-access-log``, one
process unless ``--workers``, on a free loopback port) over a SQLite store in a temporary
folder holding a tiny shop (8 products, 7 customers, an itemknn run), with
``SHOPFORMER_API_KEY`` set and ``SHOPFORMER_SEARCH=0`` (no search index: the memory is
the API's own). ``--clients`` threads (20; each its own keep-alive httpx client) then send
maximum-size bodies for ``--seconds`` (60), a quarter of the clients each kind:

* ``a``: ``POST /v1/events`` with a body of exactly ``SHOPFORMER_MAX_BODY_BYTES`` (1 MiB):
  a valid-looking event whose ``context`` is padded to fill it (expected 422: the context
  is over ``SHOPFORMER_MAX_CONTEXT_BYTES``);
* ``b``: ``--over-mb`` (300 MB) announced by ``Content-Length``, in turn to ``/v1/events``,
  the open ``/v1/recommendations/session`` and ``/v1/events:batch`` (expected 413 before
  the body is read); the client streams the body from a generator, so only what the server
  takes is ever sent (``client sent`` below);
* ``c``: the same bodies chunked, no length (expected 413 once the bytes read pass the limit);
* ``d``: ``POST /v1/events:batch`` of ``SHOPFORMER_MAX_BATCH`` (10,000) events padded to
  just under ``SHOPFORMER_MAX_BATCH_BODY_BYTES`` (16 MiB): a valid batch, stored (expected 200).

The server's ``VmRSS`` / ``VmHWM`` (the process and its children, /proc) are sampled every
0.5 s. Reported: RSS before (after start-up and a warm-up), the peak sampled RSS, ``VmHWM``
at the end (the peak, start-up included), RSS after; per kind the statuses, transport errors
(no answer), latency; every 5xx; tracebacks in the server log; /health afterwards. Target:
peak under 1 GB (10^9 bytes).

``--part fuzz``: Schemathesis over the OpenAPI spec, in process (ASGI, no network), as
tests/serve/test_fuzz.py does (its helpers are imported when importable): every operation,
schema-valid and schema-violating inputs, ``--examples`` per operation and mode (300;
derandomized), every check but the two that test_fuzz.py explains cannot hold for this
API; plus the non-finite test of test_fuzz.py (``NaN``, ``Infinity``, ``1e400`` in place
of any value of a generated body must be a 422 naming it, or a 413). Failures are
counted, not raised (no shrinking), by check; ``--max-seconds`` stops generating when
the wall time is spent (the record says so).

Usage:
    python benchmarks/api_abuse.py --part memory [--seconds 60] [--clients 20]
    python benchmarks/api_abuse.py --part fuzz [--examples 300] [--max-seconds 600]
Writes benchmarks/results/api_abuse.json and .md (one record per part, and per fuzz budget,
replaced when re-run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from results_file import save

from shopformer.evaluate.report import cpu_model

#: the tiny shop both parts serve (tests/serve/test_api.py's): two clusters, h unavailable
SEQUENCES = "u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\nu5 e f h\nu6 f g h\nu7 a c d\n"
CATALOG = """\
item_id,title,price,categories,available
a,Apron,1,kitchen,true
b,Bowl,2,kitchen,true
c,Cup,3,kitchen|cups,true
d,Dish,4,kitchen,true
e,Edger,5,garden,true
f,Fork,6,garden,true
g,Gloves,7,garden,true
h,Hose,8,garden,false
"""
TARGET_BYTES = 10**9
KINDS = {
    "a": ("exactly the body limit to POST /v1/events (context padded)", 422),
    "b": ("over the limit with Content-Length (events / session / batch in turn)", 413),
    "c": ("over the limit, chunked (events / session / batch in turn)", 413),
    "d": ("POST /v1/events:batch, max rows, just under the batch limit", 200),
}
#: where the over-limit bodies go, in turn, and how each body starts
OVER_TARGETS = [
    ("/v1/events", b'{"user_id": "abuse", "type": "view", "item_id": "a", "context": {"pad": "'),
    ("/v1/recommendations/session", b'{"k": 10, "item_ids": ["a", "b", "'),
    ("/v1/events:batch", b'[{"user_id": "abuse", "type": "view", "item_id": "a", "context": {"pad": "'),
]


def machine() -> dict:
    import schemathesis

    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "schemathesis": schemathesis.__version__}


def build_shop(root: Path) -> tuple[Path, Path, str]:
    """The tiny shop: a data folder, an itemknn run trained on all of it, and a SQLite
    store holding its events and catalog. Returns (data, run, store URL)."""
    from shopformer.artifact import make_model
    from shopformer.dataset import DataConfig
    from shopformer.experiment import train_run
    from shopformer.ingest.api import ingest
    from shopformer.store import EventStore, StoreConfig, import_folder

    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    data, run = root / "data", root / "run"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    train_run(make_model("itemknn", {"shrink": "0"}), data, DataConfig(), run, fit_on="all")
    url = f"sqlite:///{root / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, data)
    return data, run, url


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


# -- part 1: memory ------------------------------------------------------------------
@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    sent: int = 0  # bytes the over-limit generators handed to the client
    server_errors: list[str] = field(default_factory=list)


def exact_event_body(size: int, client: int) -> bytes:
    """A single event of exactly ``size`` bytes: the context's pad fills it."""
    head = json.dumps({"user_id": f"abuse-a-{client}", "type": "view", "item_id": "a", "context": {"pad": ""}})
    head = head[: -len('""}}')]
    tail = '"}}'
    body = (head + '"' + "x" * (size - len(head) - 1 - len(tail)) + tail).encode()
    assert len(body) == size, (len(body), size)
    return body


def batch_body(limit: int, rows: int, client: int) -> bytes:
    """``rows`` events (no event_id and no timestamp: each row is stored as a new event)
    whose contexts are padded so that the body is just under ``limit`` (1 KiB spare)."""
    row = json.dumps({"user_id": f"abuse-d-{client}", "type": "view", "item_id": "b", "context": {"pad": ""}})
    pad = (limit - 1024 - 2 - rows * (len(row) + 2)) // rows
    if pad < 0:
        raise SystemExit(f"{rows} rows do not fit in {limit} bytes")
    row = row.replace('"pad": ""', f'"pad": "{"y" * pad}"')
    body = ("[" + ", ".join([row] * rows) + "]").encode()
    assert len(body) <= limit, (len(body), limit)
    return body


def over_stream(prefix: bytes, total: int, tally: Tally) -> Iterator[bytes]:
    """``total`` bytes (``prefix`` then padding) made as they are sent, 64 KiB at a time."""
    yield prefix
    tally.sent += len(prefix)
    chunk = b"x" * 65536
    left = total - len(prefix)
    while left > 0:
        piece = chunk if left >= len(chunk) else chunk[:left]
        yield piece
        tally.sent += len(piece)
        left -= len(piece)


def client_loop(kind: str, index: int, base: str, api_key: str, deadline: float, body: bytes | None,
                over_bytes: int, tally: Tally) -> None:
    import httpx

    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(120.0)) as client:
        n = index  # so that clients of one kind start on different targets
        while time.monotonic() < deadline:
            if kind == "a":
                path, kw = "/v1/events", {"content": body}
            elif kind == "d":
                path, kw = "/v1/events:batch", {"content": body}
            else:
                path, prefix = OVER_TARGETS[n % len(OVER_TARGETS)]
                kw = {"content": over_stream(prefix, over_bytes, tally)}
                if kind == "b":  # an explicit length: httpx then sends no Transfer-Encoding
                    kw["headers"] = {"Content-Length": str(over_bytes)}
            n += 1
            t0 = time.perf_counter()
            try:
                r = client.post(path, **kw)
                tally.statuses[r.status_code] += 1
                if r.status_code >= 500:
                    tally.server_errors.append(f"{path} {r.status_code} {r.text[:300]}")
            except httpx.HTTPError as exc:
                tally.errors[type(exc).__name__] += 1
            tally.latencies.append(time.perf_counter() - t0)


def part_memory(args) -> dict:
    import httpx
    from serve_server import (
        _tail,
        free_port,
        proc_memory,
        server_command,
        stop,
        wait_ready,
    )

    api_key = "api-abuse-bench-key"
    limit = _env_int("SHOPFORMER_MAX_BODY_BYTES", 1 << 20)
    batch_limit = _env_int("SHOPFORMER_MAX_BATCH_BODY_BYTES", 16 << 20)
    max_batch = _env_int("SHOPFORMER_MAX_BATCH", 10_000)
    rows = args.batch_rows or max_batch
    over_bytes = int(args.over_mb * 1_000_000)
    if over_bytes <= batch_limit:
        raise SystemExit(f"--over-mb must exceed the batch limit ({batch_limit:,} bytes)")
    with tempfile.TemporaryDirectory(prefix="api-abuse-") as tmp:
        root = Path(tmp)
        _, run, url = build_shop(root)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SHOPFORMER_API_KEY": api_key, "SHOPFORMER_STORE_URL": url,
               "SHOPFORMER_RUN": str(run), "SHOPFORMER_SEARCH": "0",
               "SHOPFORMER_MAX_BODY_BYTES": str(limit), "SHOPFORMER_MAX_BATCH_BODY_BYTES": str(batch_limit),
               "SHOPFORMER_MAX_BATCH": str(max_batch)}
        log = root / "server.log"
        cmd = server_command("cli", port, access_log=False, workers=args.workers)
        print(f"starting: {' '.join(cmd[1:])}")
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_ready(proc, base, 180, log)
            auth = {"X-API-Key": api_key}
            for _ in range(20):  # warm-up: every route the load uses, with small bodies
                assert httpx.post(f"{base}/v1/events", json={"user_id": "warm", "type": "view", "item_id": "a"},
                                  headers=auth).status_code in (200, 201)
                assert httpx.post(f"{base}/v1/recommendations/session", json={"item_ids": ["a"]}).status_code == 200
                assert httpx.post(f"{base}/v1/events:batch", json=[{"user_id": "warm", "type": "view", "item_id": "b"}],
                                  headers=auth).status_code == 200
            time.sleep(1.0)
            before = proc_memory(proc.pid)
            print(f"ready; RSS before {before.get('VmRSS', 0) / 1024:,.0f} MB (VmHWM {before.get('VmHWM', 0) / 1024:,.0f} MB)")

            kinds = [sorted(KINDS)[i % len(KINDS)] for i in range(args.clients)]
            tallies = [Tally() for _ in kinds]
            bodies = {i: exact_event_body(limit, i) if k == "a" else batch_body(batch_limit, rows, i) if k == "d"
                      else None for i, k in enumerate(kinds)}
            samples: list[tuple[float, int, int]] = []
            stop_sampling = threading.Event()
            t0 = time.monotonic()

            def sample() -> None:
                while not stop_sampling.is_set():
                    m = proc_memory(proc.pid)
                    samples.append((round(time.monotonic() - t0, 2), m.get("VmRSS", 0), m.get("VmHWM", 0)))
                    stop_sampling.wait(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            deadline = t0 + args.seconds
            threads = [threading.Thread(target=client_loop, args=(k, i, base, api_key, deadline, bodies[i], over_bytes,
                                                                  tallies[i]), daemon=True)
                       for i, k in enumerate(kinds)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.seconds + 180)
            load_s = time.monotonic() - t0
            hung = sum(t.is_alive() for t in threads)
            time.sleep(2.0)
            stop_sampling.set()
            sampler.join()
            after = proc_memory(proc.pid)
            alive = proc.poll() is None
            health = httpx.get(f"{base}/health", timeout=10).status_code if alive else None
        finally:
            stop(proc)
        log_text = log.read_text(errors="replace")
        if not alive:
            print(f"the server died during the run:\n{_tail(log)}")

    body_sizes = {"b": over_bytes, "c": over_bytes}
    body_sizes.update({k: len(bodies[i]) for i, k in enumerate(kinds) if bodies[i] is not None})
    per_kind = {}
    for k, (desc, expected) in KINDS.items():
        ts = [t for t, kk in zip(tallies, kinds, strict=True) if kk == k]
        statuses, errors, lat = Counter(), Counter(), []
        for t in ts:
            statuses.update(t.statuses)
            errors.update(t.errors)
            lat += t.latencies
        n = sum(statuses.values()) + sum(errors.values())
        per_kind[k] = {
            "description": desc, "clients": len(ts), "expected": expected, "requests": n,
            "body_bytes": body_sizes.get(k),
            "statuses": {str(s): c for s, c in sorted(statuses.items())},
            "transport_errors": dict(errors),
            "unexpected": n - statuses.get(expected, 0),
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "max_s": round(max(lat), 3) if lat else None,
            "client_sent_mb": round(sum(t.sent for t in ts) / 1e6, 1) if k in "bc" else None,
        }
    server_errors = [e for t in tallies for e in t.server_errors]
    peak_kb = max((s[1] for s in samples), default=0)
    hwm_kb = after.get("VmHWM", max((s[2] for s in samples), default=0))
    record = {
        "part": "memory",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"seconds": args.seconds, "clients": args.clients, "workers": args.workers,
                   "max_body_bytes": limit, "max_batch_body_bytes": batch_limit, "batch_rows": rows,
                   "over_bytes": over_bytes, "search": False},
        "load_seconds": round(load_s, 1),
        "rss_before_mb": round(before.get("VmRSS", 0) / 1024, 1),
        "vmhwm_before_mb": round(before.get("VmHWM", 0) / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "vmhwm_end_mb": round(hwm_kb / 1024, 1),
        "rss_after_mb": round(after.get("VmRSS", 0) / 1024, 1),
        "target_bytes": TARGET_BYTES,
        "under_target": max(peak_kb, hwm_kb) * 1024 < TARGET_BYTES,
        "kinds": per_kind,
        "responses_5xx": sum(c for k in per_kind.values() for s, c in k["statuses"].items() if s.startswith("5")),
        "server_error_samples": server_errors[:10],
        "tracebacks_in_server_log": log_text.count("Traceback"),
        "server_alive": alive,
        "health_after": health,
        "clients_still_running": hung,
        "rss_samples_mb": [[t, round(r / 1024, 1)] for t, r, _ in samples],
    }
    print(f"RSS before {record['rss_before_mb']:,.0f} MB, peak {record['peak_rss_mb']:,.0f} MB "
          f"(VmHWM {record['vmhwm_end_mb']:,.0f} MB), after {record['rss_after_mb']:,.0f} MB; "
          f"5xx: {record['responses_5xx']}; under 1 GB: {record['under_target']}")
    for k, r in per_kind.items():
        print(f"  {k}: {r['requests']} requests, statuses {r['statuses']}, errors {r['transport_errors']}, "
              f"p50 {r['p50_s']} s, max {r['max_s']} s, client sent {r['client_sent_mb']} MB")
    return record


# -- part 2: fuzz --------------------------------------------------------------------
class _OutOfTime(BaseException):
    """Raised inside a Hypothesis test to stop it (not an Exception: Hypothesis lets it through)."""


def _timed(run, rec: dict) -> dict:  # noqa: ANN001 - a Hypothesis test function
    """Run ``run`` into ``rec``: its wall time, and whether the time budget cut it short."""
    t0 = time.monotonic()
    try:
        run()
    except _OutOfTime:
        rec["stopped_early"] = True
    rec["seconds"] = round(time.monotonic() - t0, 1)
    return rec


def _fuzz_helpers() -> dict:
    """test_fuzz.py's helpers when importable, else the same few lines here."""
    sys.path.insert(0, str(ROOT / "tests" / "serve"))
    try:
        import test_fuzz as tf

        return {"source": "tests/serve/test_fuzz.py", "operations": tf.OPERATIONS, "checks": tf._checks,
                "non_finite": tf.NON_FINITE, "leaves": tf._leaves, "replace": tf._replace, "key": tf.KEY}
    except Exception as exc:  # noqa: BLE001 - pytest's Skipped is an Exception too
        print(f"tests/serve/test_fuzz.py not importable ({type(exc).__name__}: {exc}); using local helpers")
    from schemathesis.checks import CHECKS, load_all_checks

    def checks(method: str) -> list:
        load_all_checks()
        skip = {"positive_data_acceptance"} | ({"negative_data_rejection"} if method == "GET" else set())
        return [c for c in CHECKS.get_all() if c.__name__ not in skip]

    def leaves(value, path=()):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from leaves(v, (*path, i))
        else:
            yield path

    def replace(value, path, new):
        if not path:
            return new
        out = list(value) if isinstance(value, list) else dict(value)
        out[path[0]] = replace(value[path[0]], path[1:], new)
        return out

    return {"source": "local", "operations": None, "checks": checks, "leaves": leaves, "replace": replace,
            "non_finite": ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"], "key": "s3cret-key"}


def _failure_check(failure) -> str:
    names = getattr(type(failure), "checks", ()) or (type(failure).__name__,)
    return "|".join(names)


def part_fuzz(args) -> dict:
    import random

    import schemathesis
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.core.failures import Failure, FailureGroup

    from shopformer.serve import ServeSettings, create_app

    h = _fuzz_helpers()
    key = h["key"]
    auth = {"X-API-Key": key}
    fuzz_settings = settings(max_examples=args.examples, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
    t_start = time.monotonic()
    stop_at = t_start + args.max_seconds
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="api-abuse-fuzz-") as tmp:
        root = Path(tmp)
        _, run, url = build_shop(root)
        app = create_app(ServeSettings(store_url=url, run=run, api_key=key, sync_s=0, search_dir=root / "search",
                                       search_semantic=False))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        api = {r.ok().label: r.ok() for r in schema.get_all_operations()}
        labels = list(api)
        missing = sorted(set(h["operations"] or labels) ^ set(labels))
        search = api["GET /v1/search"].Case(query={"q": "cup"})
        deadline = time.monotonic() + 60
        while search.call().status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)

        def fuzz_one(label: str, mode) -> dict:
            op = api[label]
            checks = h["checks"](op.method.upper())
            rec = {"operation": label, "mode": "valid" if mode is GenerationMode.POSITIVE else "invalid",
                   "examples": 0, "statuses": Counter(), "failures": Counter(), "samples": {}}

            @given(case=op.as_strategy(generation_mode=mode))
            @fuzz_settings
            def run(case):
                if time.monotonic() > stop_at:
                    raise _OutOfTime
                headers = auth if "X-API-Key" in (case.headers or {}) else None
                response = case.call(headers=headers)
                rec["examples"] += 1
                rec["statuses"][response.status_code] += 1
                try:
                    case.validate_response(response, checks=checks, headers=headers,
                                           transport_kwargs={"headers": dict(headers)} if headers else None)
                except (FailureGroup, Failure) as exc:
                    for f in (exc.exceptions if isinstance(exc, FailureGroup) else [exc]):
                        name = _failure_check(f)
                        rec["failures"][name] += 1
                        rec["samples"].setdefault(name, f"{f.title}: {str(f.message)[:400]}")

            return _timed(run, rec)

        def non_finite_one(label: str, client: TestClient) -> dict:
            op = api[label]
            rec = {"operation": label, "mode": "non-finite", "examples": 0, "statuses": Counter(),
                   "failures": Counter(), "samples": {}}

            @given(case=op.as_strategy(), pick=st.randoms(use_true_random=False), literal=st.sampled_from(h["non_finite"]))
            @fuzz_settings
            def run(case, pick: random.Random, literal: str):
                if time.monotonic() > stop_at:
                    raise _OutOfTime
                leaves = list(h["leaves"](case.body)) if isinstance(case.body, dict | list) else []
                if not leaves:
                    return
                path = pick.choice(leaves)
                raw = json.dumps(h["replace"](case.body, path, "\x00MARK\x00")).replace('"\\u0000MARK\\u0000"', literal)
                r = client.request(op.method.upper(), op.path, content=raw,
                                   headers={**auth, "Content-Type": "application/json"})
                rec["examples"] += 1
                rec["statuses"][r.status_code] += 1
                ok = r.status_code in (413, 422)
                if r.status_code == 422:
                    named = [tuple(e["loc"][1:]) for e in r.json()["detail"] if e["loc"][:1] == ["body"]]
                    ok = any(path[: len(loc)] == loc for loc in named)
                if not ok:
                    rec["failures"]["non_finite_422"] += 1
                    at = next((e["loc"][1] for e in r.json().get("detail", []) if isinstance(e, dict)
                               and e.get("type") == "json_invalid" and len(e.get("loc", [])) > 1), None)
                    near = f" (near char {at}: {raw[max(0, at - 60): at + 40]!r})" if isinstance(at, int) else ""
                    rec["samples"].setdefault("non_finite_422", f"{r.status_code} {raw[:200]}{near} -> {r.text[:300]}")

            return _timed(run, rec)

        for label in labels:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and label in ("GET /health", "GET /metrics"):
                    continue  # nothing to make invalid
                if time.monotonic() > stop_at:
                    results.append({"operation": label, "mode": "valid" if mode is GenerationMode.POSITIVE else "invalid",
                                    "skipped": "out of time"})
                    continue
                rec = fuzz_one(label, mode)
                results.append(rec)
                print(f"{label} [{rec['mode']}]: {rec['examples']} examples in {rec['seconds']} s, "
                      f"failures {dict(rec['failures']) or 0}")
        if not args.skip_non_finite:
            # its own app on the same store, as test_fuzz.py does (the first one's lifespan runs in Schemathesis)
            app2 = create_app(ServeSettings(store_url=url, run=run, api_key=key, sync_s=0, search_dir=root / "search2",
                                            search_semantic=False))
            with TestClient(app2) as client:
                client.app.state.search.wait(60)
                for label in [x for x in labels if x.split()[0] in ("POST", "PUT")]:
                    if time.monotonic() > stop_at:
                        results.append({"operation": label, "mode": "non-finite", "skipped": "out of time"})
                        continue
                    rec = non_finite_one(label, client)
                    results.append(rec)
                    print(f"{label} [non-finite]: {rec['examples']} examples in {rec['seconds']} s, "
                          f"failures {dict(rec['failures']) or 0}")

    by_check: Counter = Counter()
    statuses: Counter = Counter()
    for r in results:
        by_check.update(r.get("failures", {}))
        statuses.update(r.get("statuses", {}))
        for k in ("failures", "statuses"):
            if k in r:
                r[k] = {str(s): c for s, c in sorted(r[k].items(), key=lambda kv: str(kv[0]))}
    record = {
        "part": "fuzz",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"examples_per_operation_and_mode": args.examples, "max_seconds": args.max_seconds,
                   "non_finite": not args.skip_non_finite, "derandomize": True, "helpers": h["source"],
                   "checks": [c.__name__ for c in h["checks"]("POST")],
                   "not_checked": ["positive_data_acceptance", "negative_data_rejection (GET only)"]},
        "operations": len(labels),
        "operations_not_in_test_fuzz": missing,
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "examples": sum(r.get("examples", 0) for r in results),
        "responses_5xx": sum(c for s, c in statuses.items() if int(s) >= 500),
        "statuses": {str(s): c for s, c in sorted(statuses.items())},
        "failures_by_check": dict(by_check),
        "failures": sum(by_check.values()),
        "stopped_early": any(r.get("stopped_early") or r.get("skipped") for r in results),
        "runs": results,
    }
    print(f"fuzz: {record['examples']:,} examples over {len(labels)} operations in {record['wall_seconds']} s; "
          f"failures {record['failures_by_check'] or 0}; 5xx {record['responses_5xx']}")
    return record


# -- results -------------------------------------------------------------------------
def to_markdown(results: list[dict], meta: dict) -> str:
    lines = ["# API abuse", ""]
    for r in results:
        m = r.get("machine", meta["machine"])
        where = f"{r['date']} · {m['platform']} · {m['cpu']} ({m['cpu_count']} CPUs) · Python {m['python']}"
        if r["part"] == "memory":
            c = r["config"]
            lines += [
                "## Memory under maximum-size bodies (`--part memory`)", "", where, "",
                (f"The real server (`shopformer serve`, {c['workers']} process, SQLite store, tiny itemknn run, "
                f"search off) on loopback; {c['clients']} clients (threads, one keep-alive httpx client each, "
                f"on the same machine) sending for {c['seconds']} s; body limit {c['max_body_bytes']:,} bytes, "
                f"batch limit {c['max_batch_body_bytes']:,}, over-limit bodies {c['over_bytes']:,} bytes "
                "(streamed by the client: `client sent` is what it handed over before the answer). "
                 "RSS of the server process (and children) sampled every 0.5 s."), "",
                (f"**RSS before {r['rss_before_mb']:,.0f} MB, peak sampled {r['peak_rss_mb']:,.0f} MB, "
                f"VmHWM {r['vmhwm_end_mb']:,.0f} MB, after {r['rss_after_mb']:,.0f} MB**; target < 1 GB: "
                f"{'PASS' if r['under_target'] else 'FAIL'}. 5xx answers: {r['responses_5xx']}; tracebacks in the "
                f"server log: {r['tracebacks_in_server_log']}; /health afterwards: {r['health_after']}."), "",
                "| kind | clients | body bytes | expected | requests | statuses | no answer | p50 s | max s | client sent MB |",
                "|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
            ]
            for k, x in r["kinds"].items():
                lines.append(
                    f"| {k}: {x['description']} | {x['clients']} | {x['body_bytes'] or 0:,} | {x['expected']} | "
                    f"{x['requests']:,} | {', '.join(f'{s}: {n:,}' for s, n in x['statuses'].items()) or '-'} | "
                    f"{', '.join(f'{e}: {n}' for e, n in x['transport_errors'].items()) or '-'} | {x['p50_s']} | "
                    f"{x['max_s']} | {x['client_sent_mb'] if x['client_sent_mb'] is not None else '-'} |")
            lines.append("")
        else:
            c = r["config"]
            lines += [
                "## Schemathesis fuzz of the OpenAPI spec (`--part fuzz`)", "", where, "",
                f"In process (ASGI), {r['operations']} operations, schema-valid and schema-violating inputs, "
                f"{c['examples_per_operation_and_mode']} examples per operation and mode (derandomized; Hypothesis "
                "stops early where it runs out of distinct inputs), checks: "
                f"{', '.join(c['checks'])} (not: {', '.join(c['not_checked'])})"
                + ("; plus non-finite numbers put in place of any value of a generated body (must be a 422 naming it, "
                   "or a 413)" if c["non_finite"] else "") + ".", "",
                f"**{r['examples']:,} examples in {r['wall_seconds']:,.0f} s; failures: "
                f"{r['failures_by_check'] or 'none'}; 5xx answers: {r['responses_5xx']}**"
                + (" (stopped early: out of time)" if r["stopped_early"] else "") + ".", "",
                "| operation | mode | examples | s | statuses | failures |",
                "|---|---|---:|---:|---|---|",
            ]
            for x in r["runs"]:
                if "skipped" in x:
                    lines.append(f"| {x['operation']} | {x['mode']} | - | - | skipped ({x['skipped']}) | - |")
                    continue
                lines.append(f"| {x['operation']} | {x['mode']} | {x['examples']} | {x['seconds']} | "
                             f"{', '.join(f'{s}: {n}' for s, n in x['statuses'].items()) or '-'} | "
                             f"{', '.join(f'{s}: {n}' for s, n in x['failures'].items()) or '-'} |")
            samples = {k: v for x in r["runs"] for k, v in x.get("samples", {}).items()}
            if samples:
                lines += ["", "First failure of each check:", ""]
                lines += [f"- `{k}`: {v.splitlines()[0][:300]}" for k, v in samples.items()]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["memory", "fuzz"], required=True)
    ap.add_argument("--seconds", type=float, default=60.0, help="memory: how long the clients send")
    ap.add_argument("--clients", type=int, default=20, help="memory: concurrent clients (a quarter each kind)")
    ap.add_argument("--workers", type=int, default=1, help="memory: server processes")
    ap.add_argument("--over-mb", type=float, default=300.0, help="memory: size of the over-limit bodies (MB)")
    ap.add_argument("--batch-rows", type=int, default=0, help="memory: rows per batch (default SHOPFORMER_MAX_BATCH)")
    ap.add_argument("--examples", type=int, default=300, help="fuzz: examples per operation and mode")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="fuzz: stop generating after this wall time")
    ap.add_argument("--skip-non-finite", action="store_true", help="fuzz: without the non-finite body test")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    record = part_memory(args) if args.part == "memory" else part_fuzz(args)
    record["machine"] = machine()
    meta = {"benchmark": "api_abuse", "date": record["date"], "machine": record["machine"]}
    save(args.out, "api_abuse", meta, [record], to_markdown,
         key=lambda r: (r["part"], r["config"].get("examples_per_operation_and_mode")))
    print(f"wrote {args.out / 'api_abuse.json'} and .md")


if __name__ == "__main__":
    main()
