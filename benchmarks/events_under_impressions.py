"""What impression logging costs ``POST /v1/events`` (issue 19): on SQLite the impression
writer (a child process of the server by default) and the server's own event writes share
the database's one write lock, so a customer's event may wait for an impression batch.

benchmarks/impression_overhead.py's design, with a second stream of requests: one server
(impression logging on, default flush settings) under ONE continuous paced load, its
logging paused and resumed (``PUT /v1/admin/impressions``) every ``--phase-s`` seconds,
``--pairs`` off/on pairs (benchmarks/phased_load.py). The load is the recommend traffic
that makes the impressions (``GET /v1/users/{user}/recommendations?k=10`` from ``--clients``
connections offering ``--rate`` req/s) plus event posts from ``--event-clients``
connections offering ``--event-rate`` req/s: one ``view`` event of a real user and item of
the demo store each (``POST /v1/events``, 201), or ``--event-batch N`` of them
(``POST /v1/events:batch``, 200). Each event has a fresh ``event_id``, so every post is an
insert. Both kinds are compared off vs on apart (p50 / p99 pooled, on - off with a
bootstrap 95% interval over phase pairs). A failed event post (not 201/200, or no answer)
is counted and its answer kept: a "database is locked" would mean the 30 s busy timeout
ran out.

Usage: python benchmarks/events_under_impressions.py [--pairs 90 --event-rate 50 --stem NAME]
Writes benchmarks/results/<stem>.json and .md (stem default events_under_impressions).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from impression_overhead import count_impressions, logging_server, metric, phased_with_cpu  # noqa: E402
from phased_load import PhasedLoadConfig, Stream, compare  # noqa: E402
from results_file import save  # noqa: E402
from serve_latency import demo_scenario, fill_store  # noqa: E402
from serve_server import K, console  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.feedback.impressions import WRITERS, ImpressionLogConfig  # noqa: E402
from shopformer.features.vocab import Vocabulary  # noqa: E402


def event_stream(users: list[str], items: list[str], clients: int, rate: float, batch: int) -> Stream:
    """Posts of ``batch`` view events of known users and items, each with its own event_id."""

    def event(rnd: random.Random) -> dict:
        return {"event_id": f"bench-{rnd.getrandbits(64):016x}", "user_id": rnd.choice(users),
                "item_id": rnd.choice(items), "type": "view"}

    if batch == 1:
        return Stream("events", clients, rate, lambda rnd: "/v1/events",
                      lambda rnd: json.dumps(event(rnd)).encode(), ok_status=201)
    return Stream("events", clients, rate, lambda rnd: "/v1/events:batch",
                  lambda rnd: json.dumps([event(rnd) for _ in range(batch)]).encode(), ok_status=200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=90, help="off/on phase pairs (default %(default)s)")
    ap.add_argument("--phase-s", type=float, default=3.0, help="seconds per phase (default %(default)s)")
    ap.add_argument("--guard-s", type=float, default=0.25, help="seconds left out at each phase's start")
    ap.add_argument("--warmup", type=float, default=10.0, help="unrecorded seconds first (default %(default)s)")
    ap.add_argument("--clients", type=int, default=50, help="recommend connections (default %(default)s)")
    ap.add_argument("--rate", type=float, default=450.0, help="recommend req/s offered (default %(default)s)")
    ap.add_argument("--event-clients", type=int, default=10, help="event post connections (default %(default)s)")
    ap.add_argument("--event-rate", type=float, default=50.0, help="event posts/s offered (default %(default)s)")
    ap.add_argument("--event-batch", type=int, default=1,
                    help="events per post: 1 = POST /v1/events, more = POST /v1/events:batch (default 1)")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-serve-bench")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", action="append", default=[], help="a line for the results file (repeatable)")
    ap.add_argument("--writer", choices=WRITERS, default=ImpressionLogConfig().writer,
                    help="SHOPFORMER_IMPRESSIONS_WRITER for the server (default %(default)s)")
    ap.add_argument("--stem", default="events_under_impressions", help="results file name (default %(default)s)")
    args = ap.parse_args()
    cfg = PhasedLoadConfig(clients=args.clients, rate=args.rate, pairs=args.pairs, phase_s=args.phase_s,
                           guard_s=args.guard_s, warmup_s=args.warmup)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    args.work.mkdir(parents=True, exist_ok=True)
    sc = demo_scenario(args.work, retrain=False)
    known = Vocabulary.load(sc.run_dir / "users.json").ids
    users = random.Random(args.seed).sample(known, min(args.users, len(known)))
    items = Vocabulary.load(sc.run_dir / "items.json").ids
    paths = [f"/v1/users/{urllib.parse.quote(u, safe='')}/recommendations?k={K}" for u in users]
    events = event_stream(users, items, args.event_clients, args.event_rate, args.event_batch)

    with tempfile.TemporaryDirectory(prefix="events-under-impressions-") as tmp:
        db = Path(tmp) / "store.db"
        n_events = fill_store(sc, db, users, [], "view", args.seed)
        with logging_server(sc, db, args.writer) as (proc, port, base):
            run, wall, cpu = phased_with_cpu(proc, port, paths, cfg, args.seed, streams=(events,))
            inserted = metric(base, "shopformer_events_ingested_total", outcome="inserted")
            dropped = metric(base, "shopformer_impressions_dropped_total")
        server_log = (db.parent / "server.log").read_text(errors="replace")
        impressions = count_impressions(db)

    console.print("comparing the phases (bootstrap over pairs) ...")
    found = {"events": compare(run.only("events"), cfg.guard_s, args.seed, ok_status=events.ok_status),
             "main": compare(run.only("main"), cfg.guard_s, args.seed)}
    posts = found["events"]["requests"]
    record = {
        "scenario": sc.key,
        "design": "one_server_phases_with_event_posts",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "niceness": os.nice(0),  # the server inherits it
        "config": {"pairs": cfg.pairs, "phase_s": cfg.phase_s, "guard_s": cfg.guard_s, "warmup_s": cfg.warmup_s,
                   "clients": cfg.clients, "rate_offered": cfg.rate, "event_clients": args.event_clients,
                   "event_rate_offered": args.event_rate, "event_batch": args.event_batch,
                   "event_route": "/v1/events" if args.event_batch == 1 else "/v1/events:batch",
                   "driver": "asyncio streams (phased_load.py)", "k": K, "writer": args.writer,
                   "users_sampled": len(users), "store_events": n_events, "run": str(sc.run_dir),
                   "load_wall_s": round(wall, 1), "cpu_s_during_load": cpu},
        "events": found["events"],
        "recommend": found["main"],
        "event_posts_failed": posts["not_ok"] + run.kind_errors["events"],
        "connection_errors": run.kind_errors,
        "failures": [{"kind": k, "status": st, "body": b.decode(errors="replace")} for k, st, b in run.failures],
        "server_log_database_locked": server_log.count("database is locked"),
        "events_inserted": int(inserted),
        "impressions_written": impressions,
        "impressions_dropped": int(dropped),
        "notes": args.note,
    }
    summary = {k: {q: record[k][q] for q in ("requests", "p50", "p99", "achieved_rps")} for k in ("events", "recommend")}
    console.print_json(json.dumps(summary | {k: record[k] for k in (
        "event_posts_failed", "failures", "server_log_database_locked", "events_inserted", "impressions_written",
        "impressions_dropped")}))
    (Path(tempfile.gettempdir()) / "events_under_impressions_record.json").write_text(json.dumps(record))  # a spare
    save(args.out, args.stem, {"benchmark": "events_under_impressions"}, [record], markdown,
         key=lambda r: (r["scenario"], r["config"]["writer"], r["config"]["event_batch"]))
    console.print(f"wrote {args.out / (args.stem + '.json')} and .md")


def _table(found: dict) -> list[str]:
    lines = ["| latency | logging off (ms) | logging on (ms) | on - off (ms) | 95% interval (ms) |",
             "|---|---:|---:|---:|---:|"]
    for name in ("p50", "p99", "p99_9"):
        q = found[name]
        lo, hi = q["on_minus_off_95ci"]
        lines.append(f"| {name.replace('_', '.')} | {q['off_ms']:.2f} | {q['on_ms']:.2f} | "
                     f"**{q['on_minus_off_ms']:+.2f}** | [{lo:+.2f}, {hi:+.2f}] |")
    n, pp = found["requests"], found["per_pair_p99_difference_ms"]
    return lines + ["", f"{n['off']:,} off, {n['on']:,} on ({n['left_out']:,} left out: warm-up, guards, switches; "
                        f"{n['not_ok']} not ok); {found['achieved_rps']} req/s answered. Median over pairs of the "
                        f"per-phase p99 difference: {pp['median']:+.2f} ms [{pp['median_95ci'][0]:+.2f}, "
                        f"{pp['median_95ci'][1]:+.2f}].", ""]


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Event posts under impression logging (HTTP, loopback, SQLite)", "",
             "`python benchmarks/events_under_impressions.py`: one server under one continuous paced load of "
             "recommendations (which make the impressions) and event posts; its impression logging paused and resumed "
             "(`PUT /v1/admin/impressions`) in short alternating phases; each request counted in the phase it was "
             "sent in (the first guard seconds of a phase left out). Overhead = quantile of all 'on' requests - "
             "quantile of all 'off' requests of a kind, 95% interval by bootstrap over off/on phase pairs.", ""]
    for rec in results:
        c, m, cpu = rec["config"], rec["machine"], rec["config"]["cpu_s_during_load"]
        lines += [f"## {rec['scenario']}: {c['event_route']} (batch {c['event_batch']}) beside recommend, "
                  f"writer: {c['writer']}", "",
                  f"{rec['date']} · {m['platform']} · {m['cpus']} CPUs · Python {m['python']} · load average at "
                  f"start {rec['load_average_at_start']}, at end {rec['load_average_at_end']} · niceness "
                  f"{rec['niceness']}", "",
                  f"{c['pairs']} off/on pairs of {c['phase_s']:g} s phases (first {c['guard_s']:g} s of each left out; "
                  f"{c['warmup_s']:g} s warm-up). Recommend: {c['clients']} connections offering {c['rate_offered']:g} "
                  f"req/s, k={c['k']}, {c['users_sampled']:,} users. Event posts: {c['event_clients']} connections "
                  f"offering {c['event_rate_offered']:g} posts/s of {c['event_batch']} view event(s) of those users "
                  f"and the run's items, each with a fresh event_id. {c['store_events']:,} events in the store at the "
                  f"start; {c['driver']}; {c['load_wall_s']:g} s of load, in which the server used {cpu['server']:g} "
                  f"CPU s, its writer process {cpu['writer_process']:g} and the client {cpu['client']:g}.", "",
                  *(f"- {n}" for n in rec.get("notes", [])), *([""] if rec.get("notes") else []),
                  f"### `POST {c['event_route']}`", "", *_table(rec["events"]),
                  "### recommend (`GET /v1/users/{user}/recommendations`)", "", *_table(rec["recommend"]),
                  f"Event posts failed: **{rec['event_posts_failed']}** (connection errors by kind: "
                  f"{rec['connection_errors']}); 'database is locked' in the server log: "
                  f"{rec['server_log_database_locked']}. Events inserted: {rec['events_inserted']:,}; impressions "
                  f"written: {rec['impressions_written']:,}, dropped: {rec['impressions_dropped']}.", ""]
        if rec["failures"]:
            lines += ["First failed answers:", "", *(f"- {f['kind']} {f['status']}: `{f['body'][:200]}`"
                                                     for f in rec["failures"][:10]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
