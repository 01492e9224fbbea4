"""What impression logging costs a recommendation request, and whether a clean shutdown
loses any impression (issue 19's targets: <= 1 ms added to recommend p99 under the serving
benchmark's load; none lost).

One server (impression logging on, default flush settings) under ONE continuous load:
serve_latency's paced recommend load, ``GET /v1/users/{user}/recommendations?k=10`` from
``--clients`` keep-alive connections offering ``--rate`` req/s together. Every
``--phase-s`` seconds the benchmark pauses or resumes the server's impression logging
(``PUT /v1/admin/impressions``; a pause writes what is queued before it answers, so an
"off" phase starts with an empty queue), ``--pairs`` off/on pairs in all
(benchmarks/phased_load.py: requests attributed to the phase they were sent in, the
first ``--guard-s`` of each phase left out). A paused server does exactly what one
started with ``SHOPFORMER_IMPRESSIONS=0`` does per answer (the row is neither built nor
queued), so on - off is what logging costs. Slow noise (the neighbours' load, caches)
falls on both states alike; the interval (bootstrap over phase pairs) says what the run
resolves. The earlier design (two servers in 10 s turns) is kept in
results/impression_overhead_two_servers.md.

The model is serve_latency's demo run (a small SASRec on the bundled Online Retail
sample, trained once and cached under ``--work``); search is off (its index build would
load the CPU unevenly). After the load, the server gets SIGTERM (uvicorn's clean shutdown
runs the lifespan exit, which writes every impression queued) and the store's
impressions are counted against the recommendation answers it gave (its own
``shopformer_http_requests_total`` 200s) less those answered while paused
(``shopformer_impressions_skipped_total``).

``--writer`` picks who writes the impressions (SHOPFORMER_IMPRESSIONS_WRITER: ``process``,
a child process of the server, or ``thread``, a thread inside it); the CPU the writer
process used is counted apart from the server's.

In process, free of the machine's noise: the logging call on the request path (log on,
paused, off), the writer thread's CPU per impression, and how long one flush keeps a
request thread waiting for the GIL, for the thread writer and the writer process
(benchmarks/_lib/writer_gil.py).

Usage: python benchmarks/impression_overhead.py [--pairs 180 --phase-s 3 --writer process --stem NAME]
Writes benchmarks/results/<stem>.json and .md (stem default impression_overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _lib.writer_gil import in_process_costs  # noqa: E402
from phased_load import PhasedLoadConfig, compare, run_phased  # noqa: E402
from results_file import save  # noqa: E402
from serve_latency import demo_scenario, fill_store  # noqa: E402
from serve_server import (API_KEY, K, _descendants, _tail, console, cpu_seconds, free_port, server_command, stop,  # noqa: E402
                          wait_ready)

from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.feedback.impressions import WRITERS, ImpressionLogConfig  # noqa: E402
from shopformer.features.vocab import Vocabulary  # noqa: E402

ROUTE = "/v1/users/{user_id}/recommendations"
TARGET_MS = 1.0
DESIGN = "one_server_phases"
OLD_DESIGN = "two_servers_turns"  # records of the earlier design (no "design" field)


def metric(base: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line))  # label values may hold braces (route templates)
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def count_impressions(db: Path) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM impressions").fetchone()[0]
    finally:
        con.close()


def writer_cpu_seconds(server: int) -> float:
    """CPU seconds of the server's child processes (the impression writer process)."""
    return sum(cpu_seconds(p) for p in _descendants(server) if p != server)


def switch_request(on: bool) -> bytes:
    """The raw HTTP request that resumes (on) or pauses impression logging."""
    body = json.dumps({"paused": not on}).encode()
    return (f"PUT /v1/admin/impressions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@contextmanager
def logging_server(sc, db: Path, writer: str) -> Iterator[tuple[subprocess.Popen, int, str]]:  # noqa: ANN001 - a Scenario
    """The scenario's run served from the store ``db`` with impression logging on (written
    by ``writer``) and search off, on a free port: (process, port, base URL). On exit the
    server gets SIGTERM (uvicorn's clean shutdown: the lifespan exit writes the queue)."""
    port, log = free_port(), db.parent / "server.log"
    env = {**os.environ, "SHOPFORMER_API_KEY": API_KEY, "SHOPFORMER_STORE_URL": f"sqlite:///{db}",
           "SHOPFORMER_RUN": str(sc.run_dir.resolve()), "SHOPFORMER_SEARCH": "0", "SHOPFORMER_IMPRESSIONS": "1",
           "SHOPFORMER_IMPRESSIONS_WRITER": writer}
    with log.open("wb") as fh:
        proc = subprocess.Popen(server_command("cli", port), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_ready(proc, base, 300, log)
        console.print(f"ready ({health['model']['name']})")
        yield proc, port, base
    finally:
        stop(proc)
        if proc.returncode not in (0, -15, None):  # -15: uvicorn ends by re-raising the SIGTERM it handled
            console.print(f"[red]the server exited with {proc.returncode}[/]:\n{_tail(log)}")


def phased_with_cpu(proc: subprocess.Popen, port: int, paths: list[str], cfg: PhasedLoadConfig, seed: int,
                    streams: tuple = ()) -> tuple:
    """run_phased on the server with recommendation ``paths`` (and extra ``streams``):
    (the run, its wall seconds, CPU seconds of the client, the server and its writer process)."""
    console.print(f"{cfg.pairs} off/on pairs of {cfg.phase_s:g} s")
    t0, client0, server0 = time.perf_counter(), time.process_time(), cpu_seconds(proc.pid)
    writer0 = writer_cpu_seconds(proc.pid)
    run = run_phased("127.0.0.1", port, lambda rnd: rnd.choice(paths), {"X-API-Key": API_KEY}, cfg,
                     switch_request, seed, console, streams=streams)
    wall = time.perf_counter() - t0
    cpu = {"client": round(time.process_time() - client0, 1), "server": round(cpu_seconds(proc.pid) - server0, 1),
           "writer_process": round(writer_cpu_seconds(proc.pid) - writer0, 1)}
    time.sleep(1.0)  # answers still in flight when the load stopped
    return run, wall, cpu


def verdict(low: float, high: float) -> str:
    """Met only when the whole interval is under the limit; missed only when it is all above."""
    return "PASS" if high <= TARGET_MS else "FAIL" if low > TARGET_MS else "UNRESOLVED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = PhasedLoadConfig()
    ap.add_argument("--pairs", type=int, default=d.pairs, help=f"off/on phase pairs (default {d.pairs})")
    ap.add_argument("--phase-s", type=float, default=d.phase_s, help=f"seconds per phase (default {d.phase_s:g})")
    ap.add_argument("--guard-s", type=float, default=d.guard_s,
                    help=f"seconds left out at each phase's start (default {d.guard_s:g})")
    ap.add_argument("--warmup", type=float, default=d.warmup_s, help=f"unrecorded seconds first (default {d.warmup_s:g})")
    ap.add_argument("--clients", type=int, default=d.clients)
    ap.add_argument("--rate", type=float, default=d.rate, help=f"requests per second offered (default {d.rate:g})")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-serve-bench")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", action="append", default=[], help="a line for the results file (repeatable)")
    ap.add_argument("--writer", choices=WRITERS, default=ImpressionLogConfig().writer,
                    help="SHOPFORMER_IMPRESSIONS_WRITER for the server (default %(default)s)")
    ap.add_argument("--stem", default="impression_overhead", help="results file name (default %(default)s)")
    args = ap.parse_args()
    cfg = PhasedLoadConfig(clients=args.clients, rate=args.rate, pairs=args.pairs, phase_s=args.phase_s,
                           guard_s=args.guard_s, warmup_s=args.warmup)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    args.work.mkdir(parents=True, exist_ok=True)
    sc = demo_scenario(args.work, retrain=False)
    known = Vocabulary.load(sc.run_dir / "users.json").ids
    users = random.Random(args.seed).sample(known, min(args.users, len(known)))
    paths = [f"/v1/users/{urllib.parse.quote(u, safe='')}/recommendations?k={K}" for u in users]

    with tempfile.TemporaryDirectory(prefix="impression-overhead-") as tmp:
        db = Path(tmp) / "store.db"
        n_events = fill_store(sc, db, users, [], "view", args.seed)
        with logging_server(sc, db, args.writer) as (proc, port, base):
            run, wall, cpu = phased_with_cpu(proc, port, paths, cfg, args.seed)
            answers = metric(base, "shopformer_http_requests_total", route=ROUTE, status="200")
            skipped = metric(base, "shopformer_impressions_skipped_total")
            dropped = metric(base, "shopformer_impressions_dropped_total")
            flushed = [json.loads(s.body).get("flushed") for s in run.switches if not s.on]
        written = count_impressions(db)

    console.print("comparing the phases (bootstrap over pairs) ...")
    found = compare(run, cfg.guard_s, args.seed)
    with tempfile.TemporaryDirectory(prefix="impression-costs-") as tmp:
        costs = in_process_costs(Path(tmp), writer=args.writer)
    p99 = found["p99"]
    low, high = p99["on_minus_off_95ci"]
    lost = int(answers) - int(skipped) - written
    record = {
        "scenario": sc.key,
        "design": DESIGN,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "niceness": os.nice(0),  # the server inherits it
        "config": {"pairs": cfg.pairs, "phase_s": cfg.phase_s, "guard_s": cfg.guard_s, "warmup_s": cfg.warmup_s,
                   "clients": cfg.clients, "rate_offered": cfg.rate, "driver": "asyncio streams (phased_load.py)",
                   "k": K, "writer": args.writer, "users_sampled": len(users), "store_events": n_events, "run": str(sc.run_dir),
                   "load_wall_s": round(wall, 1), "cpu_s_during_load": cpu},
        **found,
        "connection_errors": run.errors,
        "rows_written_by_each_pause": {"median": sorted(flushed)[len(flushed) // 2] if flushed else None,
                                       "max": max(flushed) if flushed else None},
        "in_process": costs,
        "shutdown": {"answers": int(answers), "answered_while_paused": int(skipped), "impressions_written": written,
                     "dropped": int(dropped), "lost": lost},
        "notes": args.note,
    }
    record["targets"] = [
        {"target": "recommend p99 added by impression logging (pooled on - off, pair-bootstrap 95% interval)",
         "value": f"{p99['on_minus_off_ms']:+.2f} [{low:+.2f}, {high:+.2f}]", "limit": TARGET_MS, "unit": "ms",
         "result": verdict(low, high)},
        {"target": "impressions lost on a clean shutdown", "value": lost, "limit": 0, "unit": "",
         "result": "PASS" if lost <= 0 and int(dropped) == 0 else "FAIL"},
    ]
    console.print_json(json.dumps({k: record[k] for k in ("p50", "p99", "p99_9", "per_pair_p99_difference_ms",
                                                           "requests", "in_process", "shutdown", "targets")}))
    (Path(tempfile.gettempdir()) / "impression_overhead_record.json").write_text(json.dumps(record))  # a spare copy
    save(args.out, args.stem, {"benchmark": "impression_overhead"}, [record], markdown,
         key=lambda r: (r["scenario"], r.get("design", OLD_DESIGN), r.get("config", {}).get("writer", "thread")))
    console.print(f"wrote {args.out / (args.stem + '.json')} and .md")


def _old_design(rec: dict) -> list[str]:
    t = rec["targets"][0]
    return [f"## {rec['scenario']}: the earlier design (two servers, 10 s turns; {rec['date']})", "",
            f"{rec['config']['rounds']} rounds x {rec['config']['duration_s']:g} s per server: median paired p99 "
            f"difference {t['value']} ms, **{t['result']}**; per-round table in impression_overhead_two_servers.md.", ""]


def _gil_table(found: dict) -> list[str]:
    lines = ["| batch | insert | late during a flush: p50 / p99 / max (ms) | between flushes: p99 / max (ms) | "
             "flush wall (ms, median) | writer CPU (µs / impression) |", "|---|---|---:|---:|---:|---:|"]
    for batch, variants in found.items():
        for name, v in variants.items():
            d, o = v["during_flush"], v["outside_flush"]
            lines.append(f"| {batch.removeprefix('batch_')} | {name.replace('_', ' ')} | {d['p50']} / {d['p99']} / "
                         f"{d['max']} | {o['p99']} / {o['max']} | {v['flush_wall_ms_median']} | "
                         f"{v['writer_cpu_us_per_impression']} |")
    return lines


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Impression logging overhead (recommend, HTTP, loopback)", "",
             "`python benchmarks/impression_overhead.py`: one server under one continuous paced recommend load; its "
             "impression logging paused and resumed (`PUT /v1/admin/impressions`) in short alternating phases; each "
             "request counted in the phase it was sent in (the first guard seconds of a phase left out). Overhead = "
             "p99 of all 'on' requests - p99 of all 'off' requests, 95% interval by bootstrap over off/on phase pairs. "
             "Then SIGTERM (clean shutdown) and the store's impressions counted against the answers given while "
             "logging was on.", ""]
    for rec in sorted(results, key=lambda r: r.get("design", OLD_DESIGN) == OLD_DESIGN):  # the current design first
        if rec.get("design", OLD_DESIGN) == OLD_DESIGN:
            lines += _old_design(rec)
            continue
        c, m, sd, cost = rec["config"], rec["machine"], rec["shutdown"], rec["in_process"]
        writer = c.get("writer", "thread")  # records before the writer process: the thread
        lines += [f"## {rec['scenario']}: one server, logging switched every {c['phase_s']:g} s, writer: {writer}", "",
                  f"{rec['date']} · {m['platform']} · {m['cpus']} CPUs · Python {m['python']} · load average at "
                  f"start {rec['load_average_at_start']}, at end {rec['load_average_at_end']} · niceness "
                  f"{rec['niceness']}", "",
                  f"{c['pairs']} off/on pairs of {c['phase_s']:g} s phases (first {c['guard_s']:g} s of each left out; "
                  f"{c['warmup_s']:g} s warm-up), {c['clients']} connections offering {c['rate_offered']:g} req/s "
                  f"({c['driver']}; {rec['achieved_rps']} req/s answered), k={c['k']}, {c['users_sampled']:,} users, "
                  f"{c['store_events']:,} events in the store; {c['load_wall_s']:g} s of load, in which the server used "
                  f"{c['cpu_s_during_load']['server']:g} CPU s"
                  + (f", its writer process {c['cpu_s_during_load']['writer_process']:g}"
                     if writer == "process" else "")
                  + f" and the client {c['cpu_s_during_load']['client']:g}.", "",
                  *(f"- {n}" for n in rec.get("notes", [])), *([""] if rec.get("notes") else []),
                  "| latency | logging off (ms) | logging on (ms) | on - off (ms) | 95% interval (ms) |",
                  "|---|---:|---:|---:|---:|"]
        for name in ("p50", "p99", "p99_9"):
            q = rec[name]
            lo, hi = q["on_minus_off_95ci"]
            lines.append(f"| {name.replace('_', '.')} | {q['off_ms']:.2f} | {q['on_ms']:.2f} | "
                         f"**{q['on_minus_off_ms']:+.2f}** | [{lo:+.2f}, {hi:+.2f}] |")
        pp, n = rec["per_pair_p99_difference_ms"], rec["requests"]
        lines += ["", f"Requests: {n['off']:,} off, {n['on']:,} on ({n['left_out']:,} left out: warm-up, guards, "
                      f"switches; {n['not_ok']} not 200; {rec['connection_errors']} connection errors). Median over "
                      f"pairs of the per-phase p99 difference: {pp['median']:+.2f} ms [{pp['median_95ci'][0]:+.2f}, "
                      f"{pp['median_95ci'][1]:+.2f}]. A switch took {rec['switch_ms']['median']} ms (median; max "
                      f"{rec['switch_ms']['max']}); a pause wrote {rec['rows_written_by_each_pause']['median']} queued "
                      f"rows (median).", "",
                  f"In process (no load): the logging call on the request path takes "
                  f"{cost['request_path_on_us']['median']} µs (p99 {cost['request_path_on_us']['p99']}) with the log "
                  f"on, {cost['request_path_paused_us']['median']} µs (p99 {cost['request_path_paused_us']['p99']}) "
                  f"paused, {cost['request_path_off_us']['median']} µs (p99 {cost['request_path_off_us']['p99']}) off; "
                  f"the writer spends {cost['writer_cpu_us_per_impression']} µs of CPU per impression (batches of "
                  f"{cost['batch']}). How late a thread sleeping 0.5 ms wakes (its wait for the GIL) while the writer "
                  f"writes a batch: the writer thread with the SQLite insert in one chunk and in chunks with a GIL "
                  f"hand-over; the writer process (the API process hands the rows over and waits for the child's "
                  f"write; CPU: the API process's only):", "", *_gil_table(cost["writer_gil_wait_ms"]), "",
                  f"Clean shutdown: {sd['answers']:,} recommendation answers, {sd['answered_while_paused']:,} of them "
                  f"while paused, {sd['impressions_written']:,} impressions in the store, {sd['dropped']} dropped, "
                  f"{sd['lost']} lost.", "",
                  "| target | value | limit | result |", "|---|---:|---:|---|"]
        for t in rec["targets"]:
            lines.append(f"| {t['target']} | {t['value']} {t['unit']} | {t['limit']} {t['unit']} | **{t['result']}** |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
