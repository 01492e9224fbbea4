"""Customer-service answers on Amazon product Q&A (Appliances): for a held-out question,
where does its true answer rank among the product's answers, and are yes/no questions
answered right?

Protocol (src/shopformer/answers/protocol.py): questions are split by answer date,
globally: the latest 15% test, the 15% before validation, the rest training. For each
held-out question the candidates are its true answer plus the product's OTHER distinct
answers (any split; an other answer with the same normalized text as the true one is
dropped, it cannot be told apart); a question with no other distinct answer is skipped
and counted. MRR and Recall@5 are tie-aware expectations. Methods: BM25 alone (Tantivy,
question vs answer text), MiniLM alone (cosine), hybrid (fusion chosen on validation),
MiniLM with the question adapter (answers/adapter.py), hybrid + LightGBM lambdarank
re-ranker (trained on training questions, leaves and trees chosen on validation) — the
served method — and random order. Yes/no: the question-type
classifier's accuracy on test questions and the yes/no answer accuracy on test yes/no
questions answered Y or N, against the majority class of the training questions, with
Brier score, expected calibration error and the accuracy when answering only above each
confidence level (abstaining below it). The yes/no answer learners (answers/yesno.py) are
compared on validation out of fold, and the served one is the prior (the majority answer)
unless one beats always answering the majority there. Everything is chosen on
validation; test is read once.

    python benchmarks/answers.py            # about 5 min on 2 shared CPUs (encoding: most of it, cached)
    python benchmarks/answers.py --threads 1 --valid-only   # validation numbers only, test never read
    python benchmarks/answers.py --quick    # 1,500 records, end to end check

Writes benchmarks/results/answers.{json,md} and answers.png (MRR and Recall@5 per method).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from results_file import save

from shopformer.answers import Answerer, AnswererConfig, SplitConfig, load_qa, temporal_split
from shopformer.answers.answerer import yes_no_rows
from shopformer.answers.protocol import expected_rank_metrics
from shopformer.evaluate.report import machine
from shopformer.features.text import TextEncoder, TextEncoderConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data" / "amazon-qa" / "qa_Appliances.jsonl.gz"
DATASET = "amazon-qa-appliances"
METHODS = ("random", "bm25", "minilm", "adapted", "hybrid", "rerank")
LABELS = {"random": "random order", "bm25": "BM25 alone", "minilm": "MiniLM alone", "adapted": "MiniLM + adapter",
          "hybrid": "hybrid (fused)",
          "rerank": "hybrid + re-ranker (served)"}
TARGET = 1.2
#: what a reader of the numbers must know about how they were made
NOTES = (
    "Development history (said so that the test numbers are read with it): test was evaluated by two earlier runs "
    "of this script while the method was built: one whose split put the 421 answers dated 'N days ago' (the "
    "newest) in training, and whose re-ranker was stopped early on a tie-biased metric (re-ranked 1.20x); one after "
    "those fixes, before the question adapter existed (re-ranked 0.6554 against BM25 0.5603, 1.17x: target not "
    "met). The adapter was then added and its settings compared on validation only (`--valid-only`; MiniLM "
    "0.626 -> 0.700 valid MRR); the run of 2026-12-05 07:21 UTC was the first test reading of the ranking method as it "
    "stands. "
    "Validation chose a BM25 weight of 0 for the fusion, so 'hybrid' is MiniLM alone here; BM25 still enters the "
    "re-ranker as features. "
    "Yes/no answers: the run of 2026-12-05 07:21 UTC read test with the first yes/no model (the question's vector "
    "and the product's re-ranked answers, Platt scaling on validation): 0.6990 against 0.7147 for always 'yes', worse "
    "than the majority. The model was then rebuilt (the learners above, compared out of fold on validation, and the "
    "prior as fallback); the evidence settings were compared on validation only, by a development script that never "
    "read test (evidence-lr out of fold: 25 neighbours and temperature 0.05, 0.7283 accuracy / 0.5766 log-loss; 50 "
    "neighbours, 0.7305 / 0.5765; temperature 0.1, 0.7238 / 0.5755: within noise of each other, the first kept). "
    "A first run of this script with the new model (2026-12-05 21:39 UTC) chose the learner with the lowest "
    "out-of-fold log-loss first and compared it with the majority after: the legacy learner had the lowest log-loss "
    "(0.5757) but an accuracy under always 'yes' (0.7038 against 0.7082), so the prior was served and test read "
    "0.7147 (always 'yes' itself; Brier 0.2042). That rule was wrong on validation's own numbers (a learner worse than "
    "the majority blocked one better than it), and was changed to the one above; this run is the second test reading "
    "of the new yes/no model and the first of the rule as it stands. Its ranking numbers re-read the unchanged ranking "
    "method: run with one CPU thread (`--threads 1`, the machine being shared; 2 before) the re-ranker stopped at 5 "
    "trees instead of 8 (valid MRR 0.7031 against 0.7029), presumably from floating-point differences, and its test "
    "MRR is 0.6736 instead of 0.6757. The yes/no gain on test, 0.7277 against 0.7147 (5 of 382 questions), is "
    "within noise: one standard error of a 382-question accuracy is about 0.023."
)


def calibration(p_yes: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Brier score and expected calibration error of the confidence in the predicted side."""
    pred = (p_yes >= 0.5).astype(int)
    conf = np.maximum(p_yes, 1 - p_yes)
    right = (pred == y).astype(float)
    edges = np.linspace(0.5, 1.0, bins // 2 + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, len(edges) - 2)
    ece = sum(abs(right[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
              for b in range(len(edges) - 1) if (which == b).any())
    hi = conf >= 0.8
    return {"brier": float(np.mean((p_yes - y) ** 2)), "ece": float(ece),
            "accuracy_at_confidence_0.8": float(right[hi].mean()) if hi.any() else None,
            "coverage_at_confidence_0.8": float(hi.mean())}


LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)


def confidence_levels(p_yes: np.ndarray, y: np.ndarray) -> list[dict]:
    """Answering only when the confidence is at least each level (abstaining below it):
    the share answered and the accuracy on those."""
    conf, right = np.maximum(p_yes, 1 - p_yes), ((p_yes >= 0.5) == y)
    return [{"min_confidence": c, "coverage": float((conf >= c).mean()),
             "accuracy": float(right[conf >= c].mean()) if (conf >= c).any() else None} for c in LEVELS]


def yes_no_test(a: Answerer, test: np.ndarray, qvecs: np.ndarray, train: np.ndarray, valid: np.ndarray) -> dict:
    qt = a.frame["question_type"].to_list()
    rows = np.array([i for i in test if qt[i] is not None], np.int64)
    y_type = np.array([qt[i] == "yes/no" for i in rows])
    p_type = a.p_yes_no_question([a.questions[i] for i in rows], qvecs[rows])
    train_type_majority = np.mean([qt[i] == "yes/no" for i in train if qt[i] is not None]) >= 0.5
    out = {"question_type": {"test_questions": int(len(rows)), "accuracy": float(((p_type >= 0.5) == y_type).mean()),
                             "majority_accuracy": float((y_type == train_type_majority).mean())}}
    _, y_train = yes_no_rows(a.frame, train)
    majority = int(y_train.mean() >= 0.5)
    for name, rows in (("valid", valid), ("answer", test)):
        p_yes, y = a.p_yes_rows(rows, qvecs)
        out[name] = {"questions": len(y), "test_questions": len(y), "yes_share": float(y.mean()),
                     "model": a.yesno.kind, "accuracy": float(((p_yes >= 0.5) == y).mean()),
                     "majority_class": "yes" if majority else "no", "majority_accuracy": float((y == majority).mean()),
                     **calibration(p_yes, y), "levels": confidence_levels(p_yes, y),
                     "abstain_below": a.config.yesno.min_confidence}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "shopformer" / "answers-bench", help="text-vector cache folder")
    ap.add_argument("--quick", action="store_true", help="first 1,500 records: an end to end check")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--valid-only", action="store_true",
                    help="development: fit and print validation numbers, never read test, write nothing")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} not found: the Amazon Q&A data lives in ../shared/data/amazon-qa")
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    frame, dropped = load_qa(args.data, limit=1500 if args.quick else None)
    split_cfg = SplitConfig()
    split = temporal_split(frame, split_cfg)
    encoder = TextEncoder(TextEncoderConfig(cache_dir=args.cache))
    t_enc = time.perf_counter()
    qvecs = encoder.encode(frame["question"].to_list())
    avecs = encoder.encode(frame["answer"].to_list())
    enc_s = time.perf_counter() - t_enc
    t_fit = time.perf_counter()
    a = Answerer.fit(AnswererConfig(), frame, split, encoder, qvecs, avecs, progress=True)
    fit_s = time.perf_counter() - t_fit
    train, valid, test = (np.flatnonzero(split == s) for s in ("train", "valid", "test"))
    t_eval = time.perf_counter()
    valid_m = a.evaluate(valid, qvecs)
    if args.valid_only:
        import json

        yes_no_valid = {}
        if a.yesno is not None and a.yesno.answers:
            p_yes, y = a.p_yes_rows(valid, qvecs)
            yes_no_valid = {"model": a.yesno.kind, "accuracy_in_sample": float(((p_yes >= 0.5) == y).mean()),
                            **calibration(p_yes, y), "levels": confidence_levels(p_yes, y)}
        print(json.dumps({"valid": valid_m, "chosen": {k: v for k, v in a.report.items() if k != "fusion_grid"},
                          "yes_no_valid": yes_no_valid}, indent=1, default=str))
        return
    test_m = a.evaluate(test, qvecs)  # read once
    rand = [expected_rank_metrics(np.zeros(len(a.sets.of(i))), 0) for i in test if len(a.sets.of(i)) >= 2]
    test_m["random"] = {"mrr": float(np.mean([r for r, _ in rand])), "recall@5": float(np.mean([r for _, r in rand]))}
    yes_no = yes_no_test(a, test, qvecs, train, valid)
    eval_s = time.perf_counter() - t_eval
    t1 = time.perf_counter()
    ratio = test_m["rerank"]["mrr"] / test_m["bm25"]["mrr"]
    sizes = [len(a.sets.of(i)) for i in test]
    dates = frame["answered_at"]
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "dataset": DATASET, "data": str(args.data), "quick": args.quick,
        "records": frame.height, "dropped": dict(dropped), "products": len(a.sets.by_item),
        "split": {**split_cfg.__dict__, "train": int(len(train)), "valid": int(len(valid)), "test": int(len(test)),
                  "valid_from": str(dates.filter(split == "valid").min()), "test_from": str(dates.filter(split == "test").min())},
        "test_candidates": {"mean": float(np.mean(sizes)), "min": int(min(sizes)), "max": int(max(sizes)),
                            "skipped_single_answer": test_m["skipped_single_answer"], "evaluated": test_m["questions"]},
        "chosen": a.report, "yes_no": yes_no,
        "mrr_vs_bm25": ratio, "target": f"MRR >= {TARGET}x BM25's", "target_met": bool(ratio >= TARGET),
        "wall_s": {"encode": round(enc_s, 1), "fit": round(fit_s, 1), "evaluate": round(eval_s, 1),
                   "total": round(t1 - t0, 1)},
        "encoder": "all-MiniLM-L6-v2 (packaged), torch CPU threads %d" % args.threads, "notes": NOTES,
    }
    records = [{"dataset": DATASET, "model": m, "label": LABELS[m], "test": test_m[m],
                "valid": valid_m.get(m), "mrr_vs_bm25": test_m[m]["mrr"] / test_m["bm25"]["mrr"]} for m in METHODS]
    stem = "answers_quick" if args.quick else "answers"
    save(RESULTS, stem, meta, records, markdown)
    plot(records, RESULTS / f"{stem}.png", meta)
    print((RESULTS / f"{stem}.md").read_text())


def plot(records: list[dict], path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    x = np.arange(len(records))
    for off, metric in ((-0.2, "mrr"), (0.2, "recall@5")):
        vals = [r["test"][metric] for r in records]
        bars = ax.bar(x + off, vals, 0.4, label=metric.upper() if metric == "mrr" else "Recall@5")
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.axhline(records[[r["model"] for r in records].index("bm25")]["test"]["mrr"] * TARGET, color="grey", ls="--",
               lw=1, label=f"target MRR ({TARGET}x BM25)")
    ax.set_xticks(x, [r["label"] for r in records], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Amazon Q&A Appliances: {meta['test_candidates']['evaluated']} test questions, "
                 f"{meta['test_candidates']['mean']:.1f} candidates each")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def markdown(results: list[dict], meta: dict) -> str:
    s, c, yn = meta["split"], meta["test_candidates"], meta["yes_no"]
    fus = meta["chosen"]["fusion"]
    rr = meta["chosen"].get("reranker", {})
    best = max(rr.get("grid", [{}]), key=lambda r: r.get("valid_mrr", 0))
    lines = [
        "# Customer-service answers: ranking a product's past answers for a new question", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs. Updated {meta['date']}. "
        f"Wall time {meta['wall_s']['total']} s (encoding {meta['wall_s']['encode']} s, fitting "
        f"{meta['wall_s']['fit']} s, evaluation {meta['wall_s']['evaluate']} s).", "",
        f"Amazon product Q&A, Appliances (McAuley, 2016): {meta['records']} questions with one answer each on "
        f"{meta['products']} products; no product descriptions in the data, so candidates are past answers only. "
        f"Split by answer date: {s['train']} training, {s['valid']} validation (from {s['valid_from'][:10]}), "
        f"{s['test']} test questions (from {s['test_from'][:10]}). Each test question ranks its true answer among "
        f"the product's other distinct answers: {c['mean']:.2f} candidates on average ({c['min']}-{c['max']}); "
        f"{c['skipped_single_answer']} questions skipped (no other distinct answer), {c['evaluated']} evaluated. "
        f"Tie-aware expected MRR / Recall@5. Chosen on validation: fusion `{fus}`; re-ranker "
        f"{best.get('leaves')} leaves, {best.get('trees')} trees. Test read once.", "",
        "| method | test MRR | test Recall@5 | MRR vs BM25 | valid MRR |", "|---|---|---|---|---|",
    ]
    for r in results:
        valid = f"{r['valid']['mrr']:.4f}" if r.get("valid") else ""
        lines.append(f"| {r['label']} | {r['test']['mrr']:.4f} | {r['test']['recall@5']:.4f} | "
                     f"{r['mrr_vs_bm25']:.2f}x | {valid} |")
    verdict = "met" if meta["target_met"] else "NOT met"
    t, a, v = yn["question_type"], yn["answer"], yn["valid"]
    ya = meta["chosen"].get("yes_no_answer", {})
    lines += ["", f"Target (MRR >= {TARGET}x BM25 alone): **{verdict}** ({meta['mrr_vs_bm25']:.2f}x).", "",
              "## Yes/no questions", "",
              (f"- Is it a yes/no question: accuracy {t['accuracy']:.4f} on {t['test_questions']} test questions "
               f"(majority class: {t['majority_accuracy']:.4f})."), ""]
    if ya.get("learners"):
        lines += [(f"Yes or no, chosen on validation ({ya['valid']} validation yes/no questions answered Y or N, "
                   f"{ya['valid_yes_share']:.1%} yes; training {ya['train']}, {ya['train_yes_share']:.1%} yes). Each "
                   f"learner is fitted on training with its setting chosen on validation log-loss, then calibrated by "
                   f"Platt scaling on validation; as that is fitted on validation too, learners are compared out of "
                   f"fold (validation in {ya.get('folds', 5)} folds, Platt fitted on the other folds' questions). "
                   f"The 'in-sample' column (Platt fitted on all of validation) is optimistic."), "",
                  ("| learner | inputs | valid accuracy (out of fold) | valid log-loss | valid Brier | in-sample accuracy "
                   "| beats always-majority |"), "|---|---|---|---|---|---|---|"]
        for r in ya["learners"]:
            o = r["out_of_fold"]
            if r["learner"] == "prior":
                lines.append(f"| always '{a['majority_class']}' (log-loss, Brier: the other folds' yes share) |  | "
                             f"{r['always_majority_accuracy']:.4f} | {o['log_loss']:.4f} | {o['brier']:.4f} |  |  |")
            else:
                lines.append(f"| {r['learner']} | {r['features']} | {o['accuracy']:.4f} | {o['log_loss']:.4f} | "
                             f"{o['brier']:.4f} | {r['valid_in_sample']['accuracy']:.4f} | "
                             f"{'yes' if r.get('eligible') else 'no'} |")
        why = f": {ya['why']}." if ya.get("why") else "."
        lines += ["", (f"Chosen: of the learners that beat always '{a['majority_class']}' on validation out of fold "
                       f"(accuracy, and log-loss against the prior's), the lowest out-of-fold log-loss: "
                       f"**{ya['chosen']}**{why}"), ""]
    prior = (" **The served answer is the prior: nothing beat always answering the majority on validation.**"
             if a["model"] == "prior" else "")
    lines += [(f"- Yes or no, test (test yes/no questions answered Y or N, {a['test_questions']}; "
               f"{a['yes_share']:.1%} yes), served model `{a['model']}`: accuracy {a['accuracy']:.4f} against "
               f"{a['majority_accuracy']:.4f} for always '{a['majority_class']}'; Brier {a['brier']:.4f}, "
               f"ECE {a['ece']:.4f}.{prior}"), "",
              (f"Abstaining under a confidence (served: the answer says it is unsure under {a['abstain_below']}); "
               "validation is in-sample for the calibration:"), "",
              "| answer when confidence >= | valid answered | valid accuracy | test answered | test accuracy |",
              "|---|---|---|---|---|"]
    for lv, lt in zip(v["levels"], a["levels"]):
        lines.append(f"| {lv['min_confidence']} | {lv['coverage']:.1%} | {_num(lv['accuracy'])} | {lt['coverage']:.1%} "
                     f"| {_num(lt['accuracy'])} |")
    lines += ["", ("The yes/no evidence of a held-out question is the Q&A answered before it (never its own answer); "
                   "the legacy learner reads the product's other answers re-ranked for the question."), ""]
    if meta.get("notes"):
        lines += ["## Notes", "", meta["notes"], ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
