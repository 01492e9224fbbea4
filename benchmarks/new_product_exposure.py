"""New-product exposure: what a reserved slot for new items costs in NDCG@10, and the
share of top-10 slots new items get, on UCI Online Retail.

"New" here: an item whose first purchase in the training split is within the last
``--new-days`` days of the training period (the catalog's ``created_at`` within N
days, as serving reads it, is not in the data; the first sale is its stand-in).
Items first sold after the training period are left out: an ID-only SASRec has not
learned them. Beauty has no timestamps, so it is not measured.

Leave-one-out and SASRec as in benchmarks/accuracy.py (shorter training, shared with
benchmarks/diversity.py: _lib/rerank_eval.py); each user's full catalog is scored
once, and :func:`shopformer.rank.exposure.reserve` (policy ``best``: the new item
this user's model scores highest) fills ``slots`` of the top 10, at the end of the
list or at the top. Nothing is tuned: every setting is reported on validation and on
test. (Thompson sampling needs clicks on shown answers, which an offline log lacks;
its behaviour is covered by tests/rank/test_exposure.py.)

    python benchmarks/new_product_exposure.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.progress import track

from _lib.rerank_eval import candidates, ndcg_at, trained

from results_file import save
from shopformer.evaluate.report import machine
from shopformer.rank.exposure import ExposureConfig, reserve

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SETTINGS = [(0, None), (1, None), (2, None), (1, 1)]  # (slots, position): None = the last slots


def new_items(train, n_items: int, days: float) -> tuple[np.ndarray, dict]:  # noqa: ANN001 - Sequences
    """(n_items + 1,) mask of items first bought in the last ``days`` of training."""
    first = np.full(n_items + 1, np.inf)
    np.minimum.at(first, train.items, train.timestamps)
    end = float(np.max(train.timestamps))
    mask = first >= end - days * 86400.0
    mask[0] = False
    seen = np.isfinite(first[1:])
    return mask, {"new_items": int(mask.sum()), "items_in_training": int(seen.sum()),
                  "training_ends": datetime.fromtimestamp(end, timezone.utc).date().isoformat()}


def with_slots(cands, mask: np.ndarray, cfg: ExposureConfig, k: int = 10) -> np.ndarray:  # noqa: ANN001
    """(U, k) lists after reserving ``cfg.slots`` for new items (item indexes as strings
    round-trip through :func:`reserve`, the function serving calls)."""
    out = np.zeros((len(cands.idx), k), dtype=np.int64)
    for u in track(range(len(out)), description=f"slots={cfg.slots} position={cfg.position}", transient=True):
        ids = cands.idx[u]
        got = reserve(cfg, [str(i) for i in ids], cands.scores[u], k, [str(i) for i in cands.new_idx[u]],
                      cands.new_scores[u])
        out[u, : len(got.item_ids)] = [int(i) for i in got.item_ids]
    return out


def measure(lists: np.ndarray, cands, mask: np.ndarray) -> dict:  # noqa: ANN001
    top = lists[:, :10]
    hit = (top == cands.target[:, None]).any(axis=1)
    new_target = mask[cands.target]
    return {"NDCG@10": float(ndcg_at(top, cands.target).mean()), "HR@10": float(hit.mean()),
            "new_share@10": float(mask[top].sum() / max(1, (top > 0).sum())),
            "HR@10_new_targets": float(hit[new_target].mean()) if new_target.any() else None,
            "new_targets": int(new_target.sum())}


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# New-product exposure: reserved slots against NDCG@10", "",
             f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs. Updated {meta['date']}.",
             "Leave-one-out, full catalog ranking, history excluded. New: first bought in the last "
             f"{meta['config']['new_days']:g} days of the training period. A slot goes to the best-scored new item "
             "(policy `best`); no setting is tuned.", ""]
    for r in results:
        lines += [f"## {r['dataset']}", "",
                  f"SASRec fit {r['fit_seconds']} s; {r['new']['new_items']} new items of "
                  f"{r['new']['items_in_training']} in training (ends {r['new']['training_ends']}).", "",
                  "| split | slots | position | NDCG@10 | change | HR@10 | new items' share of top-10 | "
                  "HR@10 on new targets (n) |", "|---|---|---|---|---|---|---|---|"]
        for split in ("valid", "test"):
            rows = [x for x in r["rows"] if x["split"] == split]
            base = rows[0]["NDCG@10"]
            for x in rows:
                hn = "-" if x["HR@10_new_targets"] is None else f"{x['HR@10_new_targets']:.4f}"
                lines.append(f"| {split} | {x['slots']} | {'-' if not x['slots'] else x['position'] or 'last'} | {x['NDCG@10']:.4f} | "
                             f"{x['NDCG@10'] / base - 1:+.1%} | {x['HR@10']:.4f} | {x['new_share@10']:.1%} | "
                             f"{hn} ({x['new_targets']}) |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-rerank"))
    ap.add_argument("--minutes", type=float, default=8.0, help="SASRec training cap (diversity.py's run is reused)")
    ap.add_argument("--new-days", type=float, default=60.0, help="the last slice of training whose first "
                    "sales make an item new")
    ap.add_argument("--quick", action="store_true", help="tiny model, 1000 users: checks the script end to end")
    args = ap.parse_args()
    t0 = time.perf_counter()
    dataset = "online-retail"
    data, split, model, params, fit_s = trained(dataset, args.data_root, args.work, args.minutes, args.quick)
    mask, info = new_items(split.train, data.n_items, args.new_days)
    rows = []
    for name in ("valid", "test"):
        cases = split.valid if name == "valid" else split.test
        if args.quick:
            from shopformer.features.splits import EvalCases

            n = np.arange(1000)
            cases = EvalCases(cases.users[:1000], cases.history.rows(n), cases.targets.rows(n))
        cands = candidates(model, cases, 10, new_mask=mask, n_new=10, label=name)
        for slots, position in SETTINGS:
            cfg = ExposureConfig(slots=slots, position=position)
            lists = cands.idx if slots == 0 else with_slots(cands, mask, cfg)
            rows.append({"split": name, "slots": slots, "position": position, **measure(lists, cands, mask)})
            print(f"  {name} {rows[-1]}", flush=True)
    record = {"dataset": dataset + ("-quick" if args.quick else ""), "model": "sasrec", "settings": params,
              "fit_seconds": fit_s, "new": info, "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)}
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "config": {"new_days": args.new_days, "settings": SETTINGS, "policy": "best"}}
    stem = "new_product_exposure_quick" if args.quick else "new_product_exposure"
    print(markdown(save(RESULTS, stem, meta, [record], markdown), meta))


if __name__ == "__main__":
    main()
