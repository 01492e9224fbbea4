"""`train --auto` on every dataset with sequences, against the best published result and
our hand-tuned one (issue 21).

For each dataset (accuracy.py's files, splits and published numbers): the time-budgeted
search (``shopformer.tune``) on the training split with validation only, then the test
split read ONCE for the winner. Reported beside it: the best published NDCG@10 we know
(accuracy.PUBLISHED) and the best result in benchmarks/results/accuracy.json (settings
chosen by hand on validation; the same split), and EASE's test score from that file.

    python benchmarks/auto_accuracy.py --dataset lastfm --minutes 45 [--threads 0] [--no-content]

Datasets with item content (accuracy.CATALOGS) give the search the content accuracy.py's
``sasrec_content`` fuses, so fusing it is one of the search's choices (``--no-content``:
IDs only).

Writes benchmarks/results/auto_accuracy.{json,md} (one record per dataset, budget and
``--label``) and auto_accuracy_<dataset>_<minutes>min[-content][-label].png (the search's
validation NDCG@10 against time). ``--label`` keeps a run beside the earlier records of
its dataset and budget (e.g. after a change to the search) instead of replacing them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import CATALOGS, DATASETS, PUBLISHED, load, load_content  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.evaluate.protocol import EvalConfig, evaluate  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.tune import AutoConfig, AutoSearch  # noqa: E402
from shopformer.tune import report as search_report  # noqa: E402
from shopformer.tune.search import fused  # noqa: E402


def hand_tuned(dataset: str) -> dict:
    """The best Transformer and EASE test NDCG@10 in results/accuracy.json (chosen there on validation)."""
    path = HERE / "results" / "accuracy.json"
    rows = [r for r in json.loads(path.read_text())["results"] if r["dataset"] == dataset] if path.exists() else []
    best = max((r for r in rows if r["model"].startswith(("sasrec", "bert4rec"))),
               key=lambda r: r["valid"]["NDCG@10"], default=None)  # picked by validation, as it was
    ease = next((r for r in rows if r["model"] == "ease"), None)
    return {"hand_model": best["model"] if best else None,
            "hand_ndcg10": round(best["test"]["NDCG@10"], 4) if best else None,
            "ease_ndcg10": round(ease["test"]["NDCG@10"], 4) if ease else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=list(DATASETS), required=True)
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-accuracy")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--note", default="", help="the run's conditions, kept with its record (load, threads ...)")
    ap.add_argument("--no-content", action="store_true", help="do not search fusing the dataset's item content")
    ap.add_argument("--label", default="", help="a record of its own beside the others of this dataset and budget")
    args = ap.parse_args()
    load_before = os.getloadavg()

    data, split = load(args.dataset, args.data_root, args.work)
    use_content = args.dataset in CATALOGS and not args.no_content
    content = load_content(args.dataset, args.data_root, args.work, data.items) if use_content else None
    config = AutoConfig(minutes=args.minutes, seed=args.seed, threads=args.threads, content=use_content)
    result = AutoSearch(config).run(split, data.n_items,
                                    on_trial=lambda t: print(f"trial {t.number}: {t.model} {t.state} "
                                                             f"valid {t.valid_ndcg} ({t.seconds:.0f} s) {t.note} "
                                                             f"{'content' if fused(t.choice) else ''}"),
                                    content=content)
    tag = ("-content" if use_content else "") + (f"-{args.label}" if args.label else "")  # beside the others
    # the test split, read once, for the winner only
    test = evaluate(result.model, split.test, data.n_items, EvalConfig(cutoffs=(10,)), progress=False).metrics
    published = max((p for p in PUBLISHED.get(args.dataset, [])), key=lambda p: p[2], default=None)
    record = {
        "dataset": args.dataset, "model": f"auto-{args.minutes:g}min{tag}", "minutes": args.minutes,
        "winner": result.best.model + ("+content" if fused(result.best.choice) else ""),
        "winner_params": result.best.params, "winner_content": fused(result.best.choice),
        "content": search_report.summary(result)["content"], "trials": len(result.trials),
        "pruned": sum(t.state == "pruned" for t in result.trials), "search_seconds": result.seconds,
        "valid_ndcg10": round(result.best.valid_ndcg, 4),
        "test_ndcg10": round(test["NDCG@10"], 4), "test_hr10": round(test["HR@10"], 4),
        "published": {"name": published[0], "ndcg10": published[2]} if published else None,
        **hand_tuned(args.dataset), "config": asdict(config), "data_stats": result.stats.to_dict(),
        "note": args.note, "label": args.label,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
    }
    if published:
        record["vs_published"] = round(record["test_ndcg10"] / published[2] - 1, 4)
    with tempfile.TemporaryDirectory() as tmp:
        search_report.plot(result, Path(tmp) / "search.png")
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "search.png", args.out / f"auto_accuracy_{args.dataset}_{args.minutes:g}min{tag}.png")
    meta = {"benchmark": "auto_accuracy", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine()}
    save(args.out, "auto_accuracy", meta, [record], markdown)
    print(markdown([record], meta))


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# `train --auto`: time-budgeted search on validation, test read once", "",
             f"{meta['date']} · {meta['machine']}", "",
             "| dataset | budget | winner | trials (pruned) | valid NDCG@10 | test NDCG@10 | test HR@10 | best published | vs published | hand-tuned (ours) | EASE |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["dataset"], r["minutes"])):
        pub = r.get("published")
        lines.append(
            f"| {r['dataset']} | {_budget(r)} | {r['winner']} | {r['trials']} ({r['pruned']}) | "
            f"{r['valid_ndcg10']:.4f} | **{r['test_ndcg10']:.4f}** | {r['test_hr10']:.4f} | "
            + (f"{pub['ndcg10']:.4f} ({pub['name']}) | {r['vs_published']:+.1%} | " if pub else "- | - | ")
            + f"{r['hand_ndcg10'] if r['hand_ndcg10'] is not None else '-'} ({r['hand_model'] or '-'}) | "
            f"{r['ease_ndcg10'] if r['ease_ndcg10'] is not None else '-'} |")
    notes = [f"- {r['dataset']}, {_budget(r)}: {r['note']}" + _load(r)
             for r in sorted(results, key=lambda r: (r["dataset"], r["minutes"])) if r.get("note")]
    if notes:
        lines += ["", "Conditions:", ""] + notes
    return "\n".join(lines) + "\n"


def _budget(record: dict) -> str:
    return f"{record['minutes']:g} min" + (f" ({record['label']})" if record.get("label") else "")


def _load(record: dict) -> str:
    load = record.get("load_average")
    return f" (load average 1/5/15 min: before {load['before']}, after {load['after']})" if load else ""


if __name__ == "__main__":
    main()
