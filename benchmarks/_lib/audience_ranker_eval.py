"""The learned audience ranker in benchmarks/audience.py: its validation grid (ranker
fitted on an earlier cut, read at the validation cut) and its one test reading (refitted
on the validation cut with the chosen settings, read at the test cut), plus the ceiling
any ranking could reach."""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from _lib.audience_eval import Cut
from shopformer.features.sequences import Sequences
from shopformer.rank.audience_ranker import AudienceRanker, AudienceRankerConfig, ShopState, shop_state

#: leaves, with and without the season a year before (features and candidates), each
#: read at several boosting rounds (one fit each). Binary log loss only: lambdarank over
#: ~500 candidates per item took over 10 minutes a fit on 2 shared CPUs
GRID = [AudienceRankerConfig(objective="binary", num_leaves=n, n_rounds=400, season_window_days=w)
        for w in (30.0, 0.0) for n in (31, 63)]
ROUNDS = (100, 200, 400)


def with_history(cut: Cut, purchases: Sequences) -> Cut:
    """``cut`` with each candidate's history read from ``purchases`` (rows as the data
    the cut was made from, e.g. without the consecutive-repeat dedupe), before ``t``."""
    h = purchases.rows(cut.rows)
    return replace(cut, history=h.keep(h.timestamps < cut.t))


def ceiling(cut: Cut, ks: tuple[int, ...]) -> dict[str, float]:
    """The best precision@k any ranking reaches: per item min(buyers, k) / k (and recall
    min(buyers, k) / buyers), averaged over items."""
    n = np.array([len(b) for b in cut.buyers], dtype=np.float64)
    out = {}
    for k in ks:
        out[f"P@{k}"] = float(np.mean(np.minimum(n, k) / k))
        out[f"R@{k}"] = float(np.mean(np.minimum(n, k) / n))
    return out


def candidate_recall(state: ShopState, cut: Cut) -> dict[str, float]:
    """How many of the window's buyers the candidates hold (the ranker's recall bound)."""
    sizes, recall = [], []
    for item, buyers in zip(cut.items, cut.buyers):
        cands = state.candidates(int(item))
        sizes.append(len(cands))
        recall.append(np.isin(buyers, cands).mean())
    return {"mean_candidates": float(np.mean(sizes)), "buyer_recall": float(np.mean(recall))}


def validate(train: list[tuple[Cut, object]], valid_cut: Cut, valid_model, n_items: int,  # noqa: ANN001
             ks: tuple[int, ...], evaluate, grid: list[AudienceRankerConfig] = GRID,  # noqa: ANN001
             rounds_grid: tuple[int, ...] = ROUNDS) -> tuple[AudienceRankerConfig, dict, list[dict], list, dict]:
    """Every grid setting fitted on the ``train`` cuts (each with the model its features
    read, fitted before it, or None), read at ``valid_cut``: (best config, its validation
    metrics, the grid, [(state, cut)] of the validation cut then the training cuts of the
    best's season setting, info). States are built once per ``season_window_days`` in the
    grid (it changes features and candidates)."""
    table, best, info = [], None, {"state_s": 0.0, "valid_candidates_by_season": {}}
    for window in dict.fromkeys(c.season_window_days for c in grid):
        base = AudienceRankerConfig(season_window_days=window)
        t0 = time.perf_counter()
        train_states = [(shop_state(base, c.history, c.t, n_items, m), c) for c, m in train]
        valid_state = shop_state(base, valid_cut.history, valid_cut.t, n_items, valid_model)
        train_tables = [s.table(c.items) for s, c in train_states]
        valid_table = valid_state.table(valid_cut.items)
        state_s = round(time.perf_counter() - t0, 1)
        info["state_s"] = round(info["state_s"] + state_s, 1)
        recall = info["valid_candidates_by_season"][str(window)] = candidate_recall(valid_state, valid_cut)
        print(f"ranker, season window {window} days: {sum(len(t[0]) for t in train_tables)} training rows, states and "
              f"tables {state_s} s, candidates at validation {recall}", flush=True)
        for config in (c for c in grid if c.season_window_days == window):
            config = replace(config, n_rounds=max(rounds_grid))
            t0 = time.perf_counter()
            ranker = AudienceRanker(config).fit([(s, c.items, c.buyers) for s, c in train_states], train_tables)
            fit_s = round(time.perf_counter() - t0, 1)
            for rounds in rounds_grid:
                chosen = replace(config, n_rounds=rounds)
                m = evaluate(ranker.rank_many(valid_state, valid_cut.items, max(ks), rounds, valid_table), valid_cut)
                table.append({"settings": asdict(chosen), "valid_P@100": m["P@100"], "fit_s": fit_s})
                print(f"ranker {config.objective} leaves={config.num_leaves} season={window} rounds={rounds}: valid "
                      f"P@100 {m['P@100']:.4f} P@10 {m['P@10']:.4f} P@1000 {m['P@1000']:.4f} (fit {fit_s} s)", flush=True)
                if best is None or m["P@100"] > best[1]["P@100"]:
                    best = (chosen, m, [(valid_state, valid_cut), *train_states], recall,
                            (ranker.n_train_rows, ranker.n_train_positives))
    config, metrics, states, info["valid_candidates"], (info["train_rows"], info["train_positives"]) = best
    return config, metrics, table, states, info


def test(config: AudienceRankerConfig, train: list[tuple[ShopState, Cut]], test_cut: Cut, model, n_items: int,  # noqa: ANN001
         ks: tuple[int, ...], evaluate) -> tuple[dict, dict]:  # noqa: ANN001
    """The chosen setting refitted on the ``train`` (state, cut)s (their next days are
    before the test cut), read once at the test cut: (metrics, fit info)."""
    t0 = time.perf_counter()
    ranker = AudienceRanker(config).fit([(s, c.items, c.buyers) for s, c in train])
    fit_s = round(time.perf_counter() - t0, 1)
    test_state = shop_state(config, test_cut.history, test_cut.t, n_items, model)
    metrics = evaluate(ranker.rank_many(test_state, test_cut.items, max(ks), config.n_rounds), test_cut)
    return metrics, {"fit_s": fit_s, "train_rows": ranker.n_train_rows, "train_positives": ranker.n_train_positives,
                     "test_candidates": candidate_recall(test_state, test_cut), "importance": ranker.importance()}
