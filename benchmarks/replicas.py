"""Replicas: recommend latency of two API replicas on one PostgreSQL store against one,
and how fast an event posted to one replica reaches the other's answers (issue 22).

Each configuration starts its replicas (``shopformer serve``, one process each, own
loopback port) on the same PostgreSQL database (created fresh for the run, dropped at
the end, filled with the served run's data) and measures, one after the other:

* ``recommend``: ``GET /v1/users/{user}/recommendations?k=10`` for ``--users`` known
  users at ``--rate`` req/s in total, split evenly over the replicas (a load balancer
  sending each replica its share): one wrk per replica, ``--clients`` / N keep-alive
  connections each, pausing between an answer and the next request (wrk_driver.py);
* ``recommend+events``: the same while a further wrk posts ``--event-rate`` events/s to
  the first replica (for the same users: their cached histories are invalidated), and
  with two replicas a probe measures propagation every ``--probe-every`` s: it asks the
  second replica for a probe user's answer (twice, so it is cached), posts an event of
  that user to the first, reads the first's new answer, and polls the second every 5 ms
  until it gives the same (50 probe users that get no other load).

Configurations (``--configs``; all measured in one run, so they share the machine's state):

* ``one``: one replica (the baseline);
* ``two-check``: two replicas without Redis, ``SHOPFORMER_CACHE_CHECK=1`` (what ``serve
  --workers N`` does today: one indexed store query per cached answer);
* ``two-redis``: two replicas with ``SHOPFORMER_REDIS_URL`` (serve/shared_state.py): no
  per-request check, the replica that stores an event tells the others.

Each replica's latency comes from its own wrk (every answer); the combined p99 reported
is the larger of the replicas' p99s, an upper bound of the p99 over all answers. Search
is off (``SHOPFORMER_SEARCH=0``: not measured, and its index build would take CPU from
the run). The load generators run on the same machine as the servers; the report gives
the CPUs and the load average at start and after each phase.

    python benchmarks/replicas.py                   # demo SASRec (serve_latency.py's), ~5 minutes
    python benchmarks/replicas.py --run RUN_FOLDER  # a trained run whose data folder still exists

Results merge into benchmarks/results/replicas.{json,md} (one record per scenario).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx

import wrk_driver
from results_file import merged
from serve_latency import demo_scenario, run_scenario
from serve_server import API_KEY, K, cache_counts, console, free_port, server_command, stop, wait_ready

from shopformer.evaluate.report import machine
from shopformer.store.engine import scratch_database

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONFIGS = ("one", "two-check", "two-redis")
#: issue 22's targets
TARGET_RATE = 500.0
TARGET_P99_MS = 20.0
TARGET_PROPAGATION_MS = 100.0
POLL_S = 0.005


def replica_env(config: str, store_url: str, run: Path, redis_url: str, channel: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFORMER_")}
    env.update(SHOPFORMER_API_KEY=API_KEY, SHOPFORMER_STORE_URL=store_url, SHOPFORMER_RUN=str(run.resolve()),
               SHOPFORMER_SEARCH="0")
    if config == "two-check":
        env["SHOPFORMER_CACHE_CHECK"] = "1"
    if config == "two-redis":
        env.update(SHOPFORMER_REDIS_URL=redis_url, SHOPFORMER_REDIS_CHANNEL=channel)
    return env


@contextmanager
def replicas(config: str, store_url: str, run: Path, redis_url: str, tmp: Path):
    """Start the configuration's replicas; yields their base URLs once all are ready."""
    n = 1 if config == "one" else 2
    channel = f"shopformer-bench-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        procs, bases = [], []
        for i in range(n):
            port = free_port()
            log = tmp / f"{config}-{i}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen(server_command("cli", port), env=replica_env(config, store_url, run, redis_url, channel),
                                        stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            stack.callback(stop, proc)
            procs.append((proc, log))
            bases.append(f"http://127.0.0.1:{port}")
        t0 = time.perf_counter()
        for (proc, log), base in zip(procs, bases):
            wait_ready(proc, base, 300, log)
        console.print(f"{config}: {n} replica(s) ready in {time.perf_counter() - t0:.1f} s")
        if config == "two-redis":
            wait_subscribed(redis_url, channel, n)
        yield bases


def wait_subscribed(redis_url: str, channel: str, n: int, timeout: float = 10.0) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the replicas did not subscribe to {channel} within {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        client.close()


class Probe:
    """Every ``every`` s: cache a probe user's answer on replica B, post an event of that
    user to replica A, read A's new answer (A dropped the user's history as it stored the
    event) and poll B every 5 ms until B gives that answer too; the delays in ms from the
    event's acknowledgement. An event that leaves A's answer as it was proves nothing and
    is counted apart (``no_effect``)."""

    def __init__(self, a: str, b: str, users: list[str], items: list[str], event_type: str, every: float,
                 seed: str) -> None:
        self.a, self.b, self.users, self.items, self.event_type, self.every = a, b, users, items, event_type, every
        # per phase: the same item again as a user's last event would be deduplicated away
        self.seed = seed
        self.delays_ms: list[float] = []
        self.unchanged = 0  # B did not give A's new answer within 2 s
        self.no_effect = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        rnd = random.Random(self.seed)
        with httpx.Client(headers={"X-API-Key": API_KEY}, timeout=10) as http:
            def answer(base: str, user: str) -> list:
                r = http.get(f"{base}/v1/users/{user}/recommendations", params={"k": K})
                r.raise_for_status()
                return [(x["item_id"], x["score"]) for x in r.json()["items"]]

            n = 0
            while not self._stop.wait(self.every):
                user = self.users[n % len(self.users)]
                n += 1
                before = answer(self.b, user)
                answer(self.b, user)  # now from B's cache
                event = {"event_id": f"probe-{uuid.uuid4().hex}", "user_id": user, "item_id": rnd.choice(self.items),
                         "type": self.event_type}
                http.post(f"{self.a}/v1/events", json=event).raise_for_status()
                t0 = time.perf_counter()
                expected = answer(self.a, user)
                if expected == before:
                    self.no_effect += 1
                    continue
                while time.perf_counter() - t0 < 2.0:
                    if answer(self.b, user) == expected:
                        self.delays_ms.append((time.perf_counter() - t0) * 1000)
                        break
                    time.sleep(POLL_S)
                else:
                    self.unchanged += 1

    def summary(self) -> dict:
        d = sorted(self.delays_ms)
        return {"probes": len(d) + self.unchanged, "unchanged_after_2s": self.unchanged, "no_effect": self.no_effect,
                "p50_ms": round(statistics.median(d), 1) if d else None,
                "p95_ms": round(d[min(len(d) - 1, int(0.95 * len(d)))], 1) if d else None,
                "max_ms": round(d[-1], 1) if d else None}


def phase(bases: list[str], users: list[str], items: list[str], event_type: str, args, tag: str,
          events: bool, probe_users: list[str]) -> dict:
    """One measured phase (after an unrecorded warm-up of the same load)."""
    n = len(bases)
    per_clients = max(1, args.clients // n)
    think = wrk_driver.think_ms(per_clients, args.rate / n)
    common = dict(k=K, key=API_KEY, event_type=event_type, timeout_s=30.0)
    event_clients = 5
    event_think = wrk_driver.think_ms(event_clients, args.event_rate)

    def load(seconds: float, label: str) -> list[dict]:
        jobs = [("recommend", base, per_clients, think) for base in bases]
        if events:
            jobs.append(("event", bases[0], event_clients, event_think))
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [pool.submit(wrk_driver.run, base, ep, users, items, clients=c, seconds=seconds, think=t,
                                   tag=f"{tag}-{label}-{i}", threads=1, **common)
                       for i, (ep, base, c, t) in enumerate(jobs)]
            return [f.result() for f in futures]

    if args.warmup > 0:
        load(args.warmup, "warm")
    before = [cache_counts(b) for b in bases]
    probe = None
    with ExitStack() as stack:
        if events and n > 1:
            probe = stack.enter_context(Probe(bases[0], bases[1], probe_users, items, event_type, args.probe_every,
                                                     tag))
        runs = load(args.duration, "run")
    after = [cache_counts(b) for b in bases]
    rec_runs = runs[:n]
    out = {
        "replicas": [{**r, "history_cache_hit_rate": _hit_rate(b0, b1), "notices_so_far": notice_counts(base)}
                     for r, b0, b1, base in zip(rec_runs, before, after, bases)],
        "recommend": {
            "requests": sum(r["requests"] for r in rec_runs),
            "errors": sum(r["errors"] for r in rec_runs),
            "throughput_rps": round(sum(r["throughput_rps"] for r in rec_runs), 1),
            "p50_ms_max": max(r["p50_ms"] for r in rec_runs),
            "p99_ms_max": max(r["p99_ms"] for r in rec_runs),
        },
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if events:
        ev = runs[n]
        out["event"] = {k: ev[k] for k in ("requests", "errors", "throughput_rps", "p50_ms", "p99_ms")}
    if probe is not None:
        out["propagation"] = probe.summary()
    r = out["recommend"]
    console.print(f"  {'recommend+events' if events else 'recommend'}: {r['throughput_rps']:,.1f} req/s, "
                  f"p50 <= {r['p50_ms_max']} ms, p99 <= {r['p99_ms_max']} ms, errors {r['errors']}"
                  + (f"; propagation {out['propagation']}" if probe else ""))
    return out


def notice_counts(base: str) -> dict[str, float]:
    """The replica's Redis notice counters so far (none without the channel)."""
    import re

    try:
        text = httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    found = dict(re.findall(r'^shopformer_replica_notices_total\{outcome="(\w+)"\} (\S+)$', text, re.M))
    found.update(re.findall(r'^shopformer_replica_channel_(breaks|resets)_total (\S+)$', text, re.M))
    return {k: float(v) for k, v in found.items()}


def _hit_rate(before: dict, after: dict) -> float | None:
    hits = after.get("hit", 0) - before.get("hit", 0)
    misses = after.get("miss", 0) - before.get("miss", 0)
    return round(hits / (hits + misses), 4) if hits + misses else None


def targets(rec: dict) -> list[dict]:
    rows = []
    two = rec["configs"].get("two-redis")
    if two:
        for name in ("recommend", "recommend+events"):
            if name in two:
                p99 = two[name]["recommend"]["p99_ms_max"]
                rows.append({"target": f"two replicas (Redis), {name}: recommend p99 at {rec['config']['rate']:g} req/s",
                             "value": p99, "limit": f"<= {TARGET_P99_MS:g} ms", "pass": p99 <= TARGET_P99_MS})
        prop = two.get("recommend+events", {}).get("propagation")
        if prop and prop["max_ms"] is not None:
            rows.append({"target": "event on A -> changed answer from B (max over probes)", "value": prop["max_ms"],
                         "limit": f"<= {TARGET_PROPAGATION_MS:g} ms",
                         "pass": prop["max_ms"] <= TARGET_PROPAGATION_MS and prop["unchanged_after_2s"] == 0})
    return rows


def markdown(results: list[dict]) -> str:
    lines = ["# Replicas on PostgreSQL (+ Redis)", "",
             "`python benchmarks/replicas.py`: one replica against two (each `shopformer serve`, one process, own "
             "port) on one PostgreSQL database, recommend load split evenly over the replicas (one wrk each); "
             "`two-check` = no Redis, `SHOPFORMER_CACHE_CHECK=1` (today's `serve --workers`); `two-redis` = "
             "`SHOPFORMER_REDIS_URL` (cache invalidations and reload notices through Redis). The combined p99 "
             "is the larger replica p99 (an upper bound). Propagation: a probe user's answer cached on replica B, "
             "an event of that user posted to replica A, A's new answer read, then B polled every 5 ms until it "
             "gives the same; ms from the event's acknowledgement (probe users get no other load).", ""]
    for rec in results:
        c, m = rec["config"], rec["machine"]
        lines += [f"## {rec['scenario']}", "",
                  f"{rec['date']} · {m['platform']} · {m['processor']} · {m['cpus']} CPUs · Python {m['python']} · "
                  f"load average at start {rec['load_average_at_start']}"
                  + (f" · run under nice {rec['niceness']}" if rec.get("niceness") else ""), "",
                  f"Model `{rec['model']}`, {rec['store_events']:,} events in the store; {c['rate']:g} req/s offered "
                  f"by {c['clients']} connections in all, {c['duration_s']:g} s per phase after {c['warmup_s']:g} s "
                  f"warm-up, {c['users']:,} users; events phase: {c['event_rate']:g} events/s to replica A, a probe "
                  f"every {c['probe_every_s']:g} s.", "",
                  "| config | phase | req/s | errors | p50 ms (max of replicas) | p99 ms (max of replicas) | "
                  "per replica p99 ms | cache hit rate | propagation p50 / p95 / max ms | load avg after |",
                  "|---|---|---:|---:|---:|---:|---|---|---|---|"]
        for name, phases in rec["configs"].items():
            for ph, r in phases.items():
                rr, prop = r["recommend"], r.get("propagation")
                per_p99 = " / ".join(f"{x['p99_ms']:.2f}" for x in r["replicas"])
                per_hits = " / ".join(str(x["history_cache_hit_rate"]) for x in r["replicas"])
                lines.append(
                    f"| {name} | {ph} | {rr['throughput_rps']:,.1f} | {rr['errors']} | {rr['p50_ms_max']:.2f} | "
                    f"{rr['p99_ms_max']:.2f} | {per_p99} | {per_hits} | "
                    + (f"{prop['p50_ms']} / {prop['p95_ms']} / {prop['max_ms']} ({prop['probes']} probes"
                       f"{', ' + str(prop['unchanged_after_2s']) + ' unchanged' if prop['unchanged_after_2s'] else ''}"
                       f"{', ' + str(prop['no_effect']) + ' without effect' if prop.get('no_effect') else ''})"
                       if prop else "-")
                    + f" | {r['load_average_after'][0]} |")
        if rec["targets"]:
            lines += ["", "| target | value | limit | result |", "|---|---:|---|---|"]
            for t in rec["targets"]:
                lines.append(f"| {t['target']} | {t['value']} ms | {t['limit']} | **{'PASS' if t['pass'] else 'FAIL'}** |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="serve this trained run folder (default: serve_latency.py's demo SASRec)")
    ap.add_argument("--postgres-url", default=os.environ.get("SHOPFORMER_TEST_POSTGRES_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
                    help="a PostgreSQL server where the benchmark may CREATE DATABASE (default: "
                         "SHOPFORMER_TEST_POSTGRES_URL, else the local one)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma separated, from {','.join(CONFIGS)}")
    ap.add_argument("--rate", type=float, default=TARGET_RATE, help="recommend req/s offered in all (default 500)")
    ap.add_argument("--clients", type=int, default=50, help="recommend connections in all (default 50)")
    ap.add_argument("--event-rate", type=float, default=50.0, help="events/s posted in the events phase (default 50)")
    ap.add_argument("--probe-every", type=float, default=0.25, help="seconds between propagation probes")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase (default 20)")
    ap.add_argument("--warmup", type=float, default=5.0, help="unrecorded seconds before each phase (default 5)")
    ap.add_argument("--users", type=int, default=1000, help="known users sampled for requests (default 1000)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-serve-bench",
                    help="cache of the demo run (shared with serve_latency.py)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if bad := [c for c in configs if c not in CONFIGS]:
        ap.error(f"unknown config(s) {bad}; choose from {CONFIGS}")
    if not wrk_driver.available():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    args.work.mkdir(parents=True, exist_ok=True)
    sc = run_scenario(args.run) if args.run else demo_scenario(args.work, False)
    if sc.data_dir is None:
        raise SystemExit(f"{sc.run_dir}: its data folder is gone; this benchmark imports it into PostgreSQL")

    from shopformer.dataset import DataConfig
    from shopformer.features.vocab import Vocabulary
    from shopformer.store import EventStore, StoreConfig, import_folder

    info = json.loads((sc.run_dir / "run.json").read_text())
    types = DataConfig.from_dict(info["data_config"]).event_types
    event_type = types[0] if types else "view"
    all_users = Vocabulary.load(sc.run_dir / "users.json").ids
    items = random.Random(args.seed).sample(Vocabulary.load(sc.run_dir / "items.json").ids, 1000)
    # the probe's users get no other load: their answers change only by the probe's events
    picked = random.Random(args.seed).sample(all_users, min(args.users + 50, len(all_users)))
    users, probe_users = picked[:-50], picked[-50:]

    record_configs: dict[str, dict] = {}
    with scratch_database(args.postgres_url, "shopformer_replicas") as store_url, tempfile.TemporaryDirectory(prefix="replicas-") as tmp:
        with EventStore(StoreConfig(store_url)) as store:
            with console.status(f"importing {sc.data_dir} into PostgreSQL ..."):
                res = import_folder(store, sc.data_dir)
            console.print(f"store: {res.events.inserted:,} events, {res.products:,} products")
            n_events = store.count_events()
        tag = f"{int(time.time())}-{os.getpid()}"
        for config in configs:
            with replicas(config, store_url, sc.run_dir, args.redis_url, Path(tmp)) as bases:
                model = httpx.get(f"{bases[0]}/health", timeout=5).json()["model"]
                record_configs[config] = {
                    "recommend": phase(bases, users, items, event_type, args, f"{tag}-{config}", False, probe_users),
                    "recommend+events": phase(bases, users, items, event_type, args, f"{tag}-{config}-e", True,
                                              probe_users),
                }

    record = {
        "scenario": sc.key,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "niceness": os.nice(0),  # the servers and wrk inherit it
        "config": {"rate": args.rate, "clients": args.clients, "event_rate": args.event_rate,
                   "probe_every_s": args.probe_every, "duration_s": args.duration, "warmup_s": args.warmup,
                   "users": len(users), "k": K, "configs": configs, "event_type": event_type, "seed": args.seed,
                   "store": "postgresql (fresh database)", "redis": args.redis_url, "search": False},
        "model": f"{model['name']} {model['version']} ({model['retrieval']})",
        "store_events": n_events,
        "configs": record_configs,
        "notes": sc.notes,
    }
    record["targets"] = targets(record)
    args.out.mkdir(parents=True, exist_ok=True)
    results = merged(args.out / "replicas.json", [record], key=lambda r: (r["scenario"],))
    (args.out / "replicas.json").write_text(json.dumps({"benchmark": "replicas", "results": results}, indent=2) + "\n")
    (args.out / "replicas.md").write_text(markdown(results))
    console.print(markdown([record]))
    console.print(f"wrote {args.out / 'replicas.json'} and .md")


if __name__ == "__main__":
    main()
