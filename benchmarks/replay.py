"""Does the feedback loop pay? Replay UCI Online Retail (2011-01 to 2011-12-09) through the
live API in time order and measure online HR@10 week by week.

Every invoice of a customer first asks the running server for that customer's top 10
(``GET /v1/users/{id}/recommendations?k=10&exclude_history=false``: this shop's customers
are wholesalers who buy the same products again, so their history stays eligible), and
each distinct product of the invoice counts a hit when it is among them; then the
invoice's lines are posted (``POST /v1/events:batch``) naming the answer's
``request_id``, so they are attributed to it. The model is SASRec trained on December
2010 (early stopping on its validation split); the conditions:

- ``frozen``: that model, never retrained, and the invoices are not posted: every answer
  reads the customer's history as of training (a model served without real-time history);
- ``realtime``: the same model; invoices posted, so each answer reads the latest history;
- ``retrained``: as ``realtime``, and at every simulated week boundary ``shopformer
  retrain`` (warm start, gate on the last 7 days, promote if not worse) runs against the
  store; the server follows the published run;
- ``ab``: as ``realtime`` with an A/B experiment from the first invoice: variant ``a``
  the SASRec run, ``b`` EASE trained on the same month; the experiment report (a
  purchase of a shown product is the conversion) is saved beside the results.

Retraining wall time, warm against from scratch: at a few weeks of the ``retrained``
pass, a from-scratch retrain of the same store (not published) is timed beside the warm one.

    python benchmarks/replay.py [--weeks 49] [--conditions frozen,realtime,retrained,ab]

Writes benchmarks/results/replay.{json,md,png} and replay_ab.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _lib.replay_data import REPLAY_START, Invoice, first_month, invoices, load  # noqa: E402
from results_file import save  # noqa: E402
from serve_server import free_port, server_command, stop, wait_ready  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.demo import DEMO_SETTINGS  # noqa: E402
from shopformer.evaluate.report import cpu_model  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402

console = Console()
DATA = HERE.parent.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
KEY = "replay-bench-key"
K = 10
#: purchases only; an invoice's repeated lines of one product collapse into one event
DATA_CONFIG = DataConfig(event_types=("purchase",), dedupe_consecutive=True)
#: the demo's SASRec settings (chosen on the bundled sample's validation split), with a
#: longer time cap: the first month of the full log is ~5x the sample
SASREC = {**DEMO_SETTINGS["sasrec"], "train.time_limit_s": "300"}
FIRST_MONDAY = datetime(2011, 1, 3, tzinfo=timezone.utc)


def week_of(ts: datetime) -> int:
    """0 for the days before the first Monday of 2011, then 1, 2, ..."""
    return 0 if ts < FIRST_MONDAY else 1 + (ts - FIRST_MONDAY).days // 7


def week_start(week: int) -> datetime:
    return FIRST_MONDAY + timedelta(days=7 * (week - 1))


def prepare(work: Path) -> tuple[list[Invoice], dict]:
    events, products = load(DATA)
    data = work / "data-first-month"
    store_file = work / "first-month.db"
    if not store_file.exists():
        n = first_month(events, products, data, store_file)
        console.print(f"first month: {n:,} purchase lines -> {store_file}")
    runs = {}
    for name, settings in (("sasrec", SASREC), ("ease", {"l2": "50"})):
        folder = work / "runs" / f"{name}-first-month"
        if not (folder / "run.json").exists():
            t0 = time.perf_counter()
            run = train_run(make_model(name, settings), data, DATA_CONFIG, folder, fit_on="train")
            console.print(f"trained {name} on the first month in {time.perf_counter() - t0:.0f} s "
                          f"({run.info.get('fit_seconds')} s fit)")
        runs[name] = folder
    return invoices(events), runs


class Server:
    def __init__(self, work: Path, name: str, store_file: Path, run: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.store_url = f"sqlite:///{store_file}"
        self.log = work / f"server-{name}.log"
        env = {**os.environ, "SHOPFORMER_STORE_URL": self.store_url, "SHOPFORMER_RUN": str(run),
               "SHOPFORMER_API_KEY": KEY, "SHOPFORMER_SYNC_S": "0.5", "SHOPFORMER_MIN_EVENT_TIME": "2009-01-01",
               "SHOPFORMER_SEARCH": "0"}
        self.proc = subprocess.Popen(server_command("uvicorn", self.port), env=env, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)
        wait_ready(self.proc, self.base, 300, self.log)
        self.http = httpx.Client(base_url=self.base, headers={"X-API-Key": KEY}, timeout=60)

    def version(self) -> str:
        return self.http.get("/health").json()["model"]["version"]

    def close(self) -> None:
        self.http.close()
        stop(self.proc)  # SIGTERM: a clean shutdown flushes the impressions


def retrain(store_url: str, out: Path, scratch: bool = False, run: str | None = None) -> dict:
    cmd = [sys.executable, "-m", "shopformer.cli", "retrain", "--store", store_url, "--out", str(out),
           "--holdout-days", "3", "--json"] + (["--run", run] if run else [])
    if scratch:
        cmd += ["--from-scratch", "--no-publish"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    outcome = json.loads(lines[-1]) if lines else {
        "status": "failed", "message": " ".join((done.stdout[-1000:] + " " + done.stderr[-1000:]).split())}
    return {**outcome, "wall_seconds": round(seconds, 1), "exit_code": done.returncode}


def replay(name: str, work: Path, invoices_: list[Invoice], runs: dict, weeks: int, scratch_weeks: set[int]) -> dict:
    store_file = work / f"{name}.db"
    shutil.copy(work / "first-month.db", store_file)
    for stale in (work / "runs").glob("*-week-*"):  # an earlier replay's weekly runs
        shutil.rmtree(stale)
    shutil.rmtree(work / "runs" / "retrain-data", ignore_errors=True)
    server = Server(work, name, store_file, runs["sasrec"])
    post = name != "frozen"
    per_week: dict[int, dict] = {}
    retrains: list[dict] = []
    if name == "ab":
        r = server.http.post("/v1/admin/experiments", json={"name": "replay-sasrec-vs-ease", "variants": [
            {"name": "a", "run": str(runs["sasrec"])}, {"name": "b", "run": str(runs["ease"])}]})
        r.raise_for_status()
    todo = [x for x in invoices_ if week_of(x.timestamp) <= weeks]
    current_week = week_of(todo[0].timestamp)
    t_start = time.perf_counter()
    columns = (TextColumn(f"[bold]{name}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(name, total=len(todo), rate="")
            for n, inv in enumerate(todo):
                week = week_of(inv.timestamp)
                if week != current_week:
                    if name == "retrained":
                        retrains.append(weekly_retrain(server, work, week, week in scratch_weeks))
                    current_week = week
                answer = server.http.get(f"/v1/users/{inv.user_id}/recommendations",
                                         params={"k": K, "exclude_history": "false", "placement": "replay"})
                answer.raise_for_status()
                body = answer.json()
                shown = {x["item_id"] for x in body["items"]}
                w = per_week.setdefault(week, {"week": week, "invoices": 0, "items": 0, "hits": 0})
                w["invoices"] += 1
                w["items"] += len(inv.items)
                w["hits"] += len(inv.items & shown)
                if post:
                    r = server.http.post("/v1/events:batch", json=[{**e, "request_id": body["request_id"]}
                                                                    for e in inv.events])
                    r.raise_for_status()
                if n % 200 == 0:
                    hr = sum(x["hits"] for x in per_week.values()) / max(1, sum(x["items"] for x in per_week.values()))
                    bar.update(task, rate=f"HR@10 {hr:.4f}")
                bar.advance(task)
    finally:
        server.close()
    seconds = time.perf_counter() - t_start
    weekly = [{**w, "hr": w["hits"] / w["items"] if w["items"] else None} for _, w in sorted(per_week.items())]
    hits, items = sum(w["hits"] for w in weekly), sum(w["items"] for w in weekly)
    out = {"condition": name, "invoices": len(todo), "items": items, "hits": hits, "hr": hits / items,
           "seconds": round(seconds, 1), "weekly": weekly, "retrains": retrains}
    if name == "ab":
        out["experiment"] = ab_report(work, server.store_url)
    console.print(f"{name}: HR@10 {out['hr']:.4f} over {len(todo):,} invoices ({items:,} products) in {seconds:.0f} s")
    return out


def weekly_retrain(server: Server, work: Path, week: int, with_scratch: bool) -> dict:
    """The week boundary of the ``retrained`` pass: retrain (warm), wait for the server to
    serve the promoted run; optionally time a from-scratch retrain of the same store."""
    before = server.version()
    scratch = None
    if with_scratch:  # first, against the same current run as the warm round (after it, nothing new is left)
        current = server.http.get("/health").json()["model"]["run"]
        scratch = retrain(server.store_url, work / "runs" / f"scratch-week-{week:02d}", scratch=True, run=current)
    record = {"week": week, **retrain(server.store_url, work / "runs" / f"retrained-week-{week:02d}")}
    if record.get("status") == "promoted":
        deadline = time.monotonic() + 30
        while server.version() == before and time.monotonic() < deadline:
            time.sleep(0.2)
        record["served_after"] = server.version()
    if scratch is not None:
        record["scratch"] = scratch
    console.print(f"week {week}: {record.get('status')} ({record.get('message', '')[:160]}) "
                  f"in {record['wall_seconds']} s" + (f"; from scratch {record['scratch']['wall_seconds']} s"
                                                       if with_scratch else ""))
    return record


def ab_report(work: Path, store_url: str) -> dict:
    from shopformer.feedback.abtest import ABConfig
    from shopformer.feedback.experiment_report import experiment_report, plot_report
    from shopformer.store import EventStore, StoreConfig

    with EventStore(StoreConfig(store_url)) as store:
        result = experiment_report(store, "replay-sasrec-vs-ease", ABConfig(metric="purchase"))
    plot_report(result, HERE / "results" / "replay_ab.png")
    (HERE / "results" / "replay_ab.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result.to_dict()


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for r in results:
        if r["condition"] == "ab":
            continue
        weeks = [w["week"] for w in r["weekly"] if w["hr"] is not None]
        ax.plot(weeks, [w["hr"] for w in r["weekly"] if w["hr"] is not None], marker=".",
                label=f"{r['condition']} (HR@10 {r['hr']:.4f})")
    ax.set_xlabel("week of 2011 (replayed in time order)")
    ax.set_ylabel("online HR@10")
    ax.set_title("UCI Online Retail replayed through the API: never retrained vs real-time vs weekly retraining")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: list[dict], meta: dict) -> str:
    by = {r["condition"]: r for r in results}
    lines = [f"# Online Retail replay through the API ({meta['date']})", "",
             f"Machine: {meta['machine']['cpu']}, Python {meta['machine']['python']}. {meta['protocol']}", "",
             "| condition | invoices | products bought | hits | online HR@10 | wall s |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['condition']} | {r['invoices']:,} | {r['items']:,} | {r['hits']:,} | {r['hr']:.4f} | "
                     f"{r['seconds']} |")
    if "retrained" in by and "frozen" in by:
        lift = by["retrained"]["hr"] / by["frozen"]["hr"] - 1
        lines += ["", f"Weekly retraining vs never retrained (frozen): {lift:+.1%} relative HR@10."]
    if "retrained" in by and "realtime" in by:
        lines.append(f"Weekly retraining vs the same model with real-time history: "
                     f"{by['retrained']['hr'] / by['realtime']['hr'] - 1:+.1%}.")
    rt = by.get("retrained", {}).get("retrains", [])
    if rt:
        lines += ["", "## Weekly retraining", "",
                  "Gate: NDCG@10 of the current and the new run on the last 3 days' purchases (full catalog); "
                  "wall s: the whole `shopformer retrain` command (snapshot, training, gate); train s: fitting only. "
                  "Scratch: a from-scratch retrain of the same store at that week, not published.", "",
                  "| week | outcome | cases | current | new | warm wall s | warm train s | epochs | scratch wall s "
                  "| scratch train s | scratch epochs | scratch new | scratch outcome |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

        def cells(x: dict) -> list:
            d, v = x.get("details") or {}, x.get("version") or {}
            return [d.get("cases", ""), d.get("current", ""), d.get("candidate", ""), x["wall_seconds"],
                    round(v["train_seconds"], 1) if v.get("train_seconds") else "", d.get("epochs_run", "")]

        for x in rt:
            main, sc = cells(x), cells(x["scratch"]) if "scratch" in x else [""] * 6
            lines.append(f"| {x['week']} | {x.get('status')} | " + " | ".join(str(c) for c in main)
                         + " | " + " | ".join(str(c) for c in (sc[3], sc[4], sc[5], sc[2]))
                         + f" | {x['scratch'].get('status', '') if 'scratch' in x else ''} |")
        warm = [x["wall_seconds"] for x in rt if x.get("status") == "promoted"]
        if warm:
            lines.append(f"\nWarm retrains promoted: {len(warm)} of {len(rt)} rounds; median wall "
                         f"{sorted(warm)[len(warm) // 2]} s.")
    if "ab" in by and by["ab"].get("experiment"):
        e = by["ab"]["experiment"]
        lines += ["", "## A/B in the replay (a = SASRec, b = EASE; conversion = a purchase of a shown product)", ""]
        for v in e["variants"]:
            p = v["rates"]["purchase"]
            lines.append(f"- {v['variant']}: {v['units']} customers, {v['answers']} answers, purchase rate "
                         f"{p['rate']:.2%} [{p['low']:.2%}, {p['high']:.2%}]"
                         + (f", diff {p['diff']:+.2%} (p={p['p_value']:.3g})" if p["diff"] is not None else ""))
        lines.append(f"- verdict: {e['verdict']}")
    lines += ["", "![weekly HR@10](replay.png)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/shopformer-replay"))
    ap.add_argument("--weeks", type=int, default=60, help="replay up to this week of 2011 (all: 60)")
    ap.add_argument("--conditions", default="frozen,realtime,retrained,ab")
    ap.add_argument("--scratch-weeks", default="20,40", help="weeks whose warm retrain is timed against scratch")
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent: the replay needs ../shared/data/online-retail")
    args.workdir.mkdir(parents=True, exist_ok=True)
    invoices_, runs = prepare(args.workdir)
    scratch = {int(x) for x in args.scratch_weeks.split(",") if x}
    out = HERE / "results"
    for condition in args.conditions.split(","):  # saved one by one: a later pass can redo one condition
        record = replay(condition, args.workdir, invoices_, runs, args.weeks, scratch)
        save(out, "replay", meta(args), [record], markdown, key=lambda r: (r["condition"],))
        plot(json.loads((out / "replay.json").read_text())["results"], out / "replay.png")
    console.print(f"results in {out / 'replay.md'}")


def meta(args: argparse.Namespace) -> dict:
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "python": platform.python_version(), "system": platform.platform()},
            "config": {"k": K, "sasrec": SASREC, "data_config": DATA_CONFIG.to_dict(), "weeks": args.weeks,
                       "replay_start": REPLAY_START.isoformat(), "retrain": "shopformer retrain --holdout-days 3"},
            "protocol": ("One recommendation request per invoice before its lines are posted; a hit per distinct "
                         "product bought that is in the top 10 (history not excluded).")}


if __name__ == "__main__":
    main()
