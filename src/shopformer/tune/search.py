"""A time-budgeted search over models and settings, scored on validation only.

The baselines go first (item-kNN, EASE at a few penalties: seconds each on a shop's
catalog), so the answer is never worse on validation than the best of them. Then the
Transformer: Optuna's TPE sampler over :func:`shopformer.tune.space.suggest`, its first
trial the setting the data's statistics suggest (:mod:`shopformer.tune.priors`), so a
short budget already trains a sensible model. Each trial trains on the training split
with early stopping on validation NDCG@10 and a time limit (a share of the budget, its
learning-rate decay following that clock); a trial whose validation curve trails the
median of earlier trials at the same evaluation is pruned (Optuna's MedianPruner).
Optionally (``ensemble_sizes``), the best Transformer setting is then trained again as an
ensemble of that many networks (other seeds, each given the winning trial's time) while
the budget allows, and kept only when it scores higher on validation. The best model
found is kept as trained (nothing reads test).

Given the catalog's item content (attribute tokens; ``run(content=...)``), whether a
Transformer trial fuses it with the item IDs is one more choice of the space, "on" in
the first trial. A fused trial is calibrated after training as any fused model is
(``models/calibration.py``, on validation: on a seeded sample of the cases sized to the
budget, ``calibration_cases_per_minute``), so it is scored on validation as calibrated,
the model the search keeps. Without content the search is what it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from shopformer.artifact import make_model
from shopformer.evaluate.protocol import EvalConfig, evaluate
from shopformer.features.content import ItemContent
from shopformer.features.splits import Split
from shopformer.models.base import Recommender

from .priors import DataStats, starting_setting
from .space import model_params, suggest

log = logging.getLogger("shopformer.tune")

#: the baselines tried, each a few settings (make_model parameters)
BASELINE_GRID: dict[str, list[dict[str, str]]] = {
    "itemknn": [{}, {"neighbors": "200", "shrink": "10"}],
    "ease": [{"l2": "100"}, {"l2": "500"}, {"l2": "2000"}],
}


@dataclass(frozen=True)
class AutoConfig:
    """minutes: the whole search's wall-time budget (baselines included).
    baselines: which of :data:`BASELINE_GRID` to try first.
    transformer: search the Transformer (off: baselines only).
    trial_share: a Transformer trial trains at most this share of the budget.
    min_trial_s: no Transformer trial starts with less time than this left.
    prune: stop trials that trail the others early (MedianPruner).
    ease_max_items: EASE is skipped above this catalog size (it inverts an items x items
        matrix: 40k items is 6.4 GB in float32).
    seed: of the sampler and of every trial's training.
    ensemble_sizes: after the search, the best Transformer setting trained again as an
        ensemble of each of these many networks (in order, while the budget lasts), kept
        when it beats the best on validation. Off by default: an ensemble run cannot
        place new products by their text (retraining's warm start and content cold start
        need a single network).
    ensemble_share: with ``ensemble_sizes``, the share of the budget the Transformer
        search leaves for the ensembles.
    content: search fusing the item content ``run`` is given (off: IDs only, as
        without content).
    calibration_cases_per_minute: a fused trial's calibration (``models/calibration.py``)
        chooses on a seeded sample of at most this many validation cases per minute of
        budget (None: all cases). Its grid costs time in proportion to the cases, which a
        short budget cannot spare (10 minutes on Amazon Beauty: 5,000 of 22,363 cases);
        45 minutes covers every case there, as before. The trial is still scored on all
        validation cases."""

    minutes: float = 10.0
    baselines: tuple[str, ...] = ("itemknn", "ease")
    transformer: bool = True
    trial_share: float = 0.35
    min_trial_s: float = 15.0
    prune: bool = True
    ease_max_items: int = 40_000
    seed: int = 0
    threads: int = 0
    ensemble_sizes: tuple[int, ...] = ()
    ensemble_share: float = 0.4
    content: bool = True
    calibration_cases_per_minute: int | None = 500

    def __post_init__(self) -> None:
        if any(int(m) < 2 for m in self.ensemble_sizes):
            raise ValueError(f"ensemble sizes must be >= 2, got {list(self.ensemble_sizes)}")
        if not 0.0 < self.ensemble_share < 1.0:
            raise ValueError(f"ensemble_share must be in (0, 1), got {self.ensemble_share}")


@dataclass
class TrialRecord:
    number: int
    model: str
    params: dict[str, str]
    valid_ndcg: float | None
    state: str  # complete | pruned | failed
    started_s: float  # since the search began
    seconds: float
    choice: dict = field(default_factory=dict)  # the space's values (Transformer trials)
    epochs: int | None = None
    best_epoch: int | None = None
    note: str = ""
    #: seconds kept from its training clock for what follows training (validation passes,
    #: a fused model's calibration and scoring), as measured on earlier trials of its kind
    reserved_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AutoResult:
    model: Recommender
    best: TrialRecord
    trials: list[TrialRecord]
    stats: DataStats
    budget_s: float
    seconds: float
    content: ItemContent | None = None  # what fused trials were given (None: not searched)


def validation_ndcg(model: Recommender, split: Split, n_items: int) -> float:
    """NDCG@10 on the validation cases, full catalog (what the Transformer stops on)."""
    return float(evaluate(model, split.valid, n_items, EvalConfig(cutoffs=(10,)), progress=False).metrics["NDCG@10"])


class AutoSearch:
    def __init__(self, config: AutoConfig = AutoConfig()) -> None:
        self.config = config
        self.trials: list[TrialRecord] = []
        self._best: tuple[float, Recommender, TrialRecord] | None = None
        #: by fused or not: the most wall seconds a finished Transformer trial spent beyond
        #: its training clock (the time limit counts training only)
        self._overhead: dict[bool, float] = {}

    def _keep(self, score: float, model: Recommender, record: TrialRecord) -> None:
        if self._best is None or score > self._best[0]:
            self._best = (score, model, record)

    def run(self, split: Split, n_items: int, on_trial: Callable[[TrialRecord], None] | None = None,
            content: ItemContent | None = None) -> AutoResult:
        """Search within the budget; ``on_trial`` sees each finished trial (progress).
        ``content``: the catalog's item content, rows aligned with the item indices
        (``features.content.build_content``); fusing it is then searched."""
        c = self.config
        content = content if c.content else None
        if content is not None and len(content.tokens) != n_items + 1:
            raise ValueError(f"content has {len(content.tokens)} rows; the catalog needs n_items + 1 = {n_items + 1}")
        budget = c.minutes * 60.0
        t0 = time.perf_counter()
        deadline = t0 + budget
        stats = DataStats.of(split.train, n_items)

        def done(record: TrialRecord) -> None:
            self.trials.append(record)
            if on_trial is not None:
                on_trial(record)

        for name in c.baselines:
            if name == "ease" and n_items > c.ease_max_items:
                log.info("EASE skipped: %d items > ease_max_items %d", n_items, c.ease_max_items)
                continue
            for params in BASELINE_GRID[name]:
                if self.trials and time.perf_counter() > t0 + 0.5 * budget:
                    break  # the baselines never take more than half the budget (one always runs)
                start = time.perf_counter()
                model = make_model(name, params)
                model.fit(split.train, n_items, valid=split.valid)
                score = validation_ndcg(model, split, n_items)
                record = TrialRecord(len(self.trials), name, params, round(score, 6), "complete",
                                     round(start - t0, 2), round(time.perf_counter() - start, 2))
                self._keep(score, model, record)
                done(record)
        # the Transformer search leaves the ensembles their share of the budget
        searching_until = deadline - (c.ensemble_share * budget if c.ensemble_sizes else 0.0)
        if c.transformer and searching_until - time.perf_counter() >= c.min_trial_s:
            self._search_transformer(split, n_items, stats, t0, searching_until, done, content)
        if c.ensemble_sizes and self._best is not None and self._best[2].model == "sasrec":
            self._ensembles(split, n_items, t0, deadline, done, content)
        if self._best is None:
            raise RuntimeError("no trial finished: give the search more minutes")
        _, model, best = self._best
        return AutoResult(model, best, self.trials, stats, budget, round(time.perf_counter() - t0, 2), content)

    def _ensembles(self, split: Split, n_items: int, t0: float, deadline: float,
                   done: Callable[[TrialRecord], None], content: ItemContent | None) -> None:
        """The winning Transformer setting as ensembles of ``ensemble_sizes`` networks:
        member k trains with seed + k (member 0 repeats the winner) within the winner's
        time, so an ensemble of m needs about m times it; sizes that no longer fit the
        budget are skipped."""
        winner = self._best[2]
        for m in self.config.ensemble_sizes:
            need = m * max(winner.seconds, 1.0) * 1.1  # each member gets the winner's time
            left = deadline - time.perf_counter()
            if left < need:
                log.info("no time for an ensemble of %d (%.0f s left, %.0f s needed)", m, left, need)
                continue
            params = {**winner.params, "members": str(m), "train.time_limit_s": f"{need:.1f}"}
            start = time.perf_counter()
            record = TrialRecord(len(self.trials), "sasrec", params, None, "complete", round(start - t0, 2), 0.0,
                                 {**winner.choice, "members": m}, note=f"ensemble of {m} (trial {winner.number}'s setting)")
            try:
                model = make_model("sasrec", params)
                if fused(winner.choice):
                    model.content = content
                model.fit(split.train, n_items, valid=split.valid)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory with m networks
                record.state, record.note = "failed", f"ensemble of {m}: {str(exc)[:180]}"
                record.seconds = round(time.perf_counter() - start, 2)
                done(record)
                continue
            score = validation_ndcg(model, split, n_items)
            record.valid_ndcg, record.seconds = round(score, 6), round(time.perf_counter() - start, 2)
            record.epochs = len(model.history.records)
            self._keep(score, model, record)
            done(record)

    def _search_transformer(self, split: Split, n_items: int, stats: DataStats, t0: float, deadline: float,
                            done: Callable[[TrialRecord], None], content: ItemContent | None) -> None:
        import optuna

        c = self.config
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=c.seed, n_startup_trials=4)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2) if c.prune else optuna.pruners.NopPruner()
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        study.enqueue_trial(starting_setting(stats, content is not None))

        def objective(trial: optuna.Trial) -> float:
            left = deadline - time.perf_counter()
            choice = suggest(trial, stats, content is not None)
            reserve = self._overhead.get(fused(choice), 0.0)  # so that the trial ends by the deadline
            limit = min(left - reserve, c.trial_share * c.minutes * 60.0)
            params = model_params(choice, limit, c.seed, c.threads)
            if fused(choice):
                params.update(calibration_params(c, len(split.valid)))
            model = make_model("sasrec", params)
            if fused(choice):  # as train --content and accuracy.py's sasrec_content give it
                model.content = content
            evaluations = [0]

            def report(score: float) -> None:
                evaluations[0] += 1
                trial.report(score, evaluations[0])
                if trial.should_prune():
                    raise optuna.TrialPruned()

            model.on_validation = report
            start = time.perf_counter()
            record = TrialRecord(len(self.trials), "sasrec", params, None, "complete", round(start - t0, 2), 0.0,
                                 choice, reserved_s=round(reserve, 2))
            try:
                model.fit(split.train, n_items, valid=split.valid)
            except optuna.TrialPruned:
                record.state, record.epochs = "pruned", evaluations[0]
                record.seconds = round(time.perf_counter() - start, 2)
                record.note = f"pruned after {evaluations[0]} evaluations"
                done(record)
                raise
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory at this width: try others
                record.state, record.note = "failed", str(exc)[:200]
                record.seconds = round(time.perf_counter() - start, 2)
                done(record)
                raise
            history = model.history
            # a fused model was calibrated on validation after training: score what is kept
            score = validation_ndcg(model, split, n_items) if fused(choice) else float(history.best_valid)
            record.valid_ndcg, record.seconds = round(score, 6), round(time.perf_counter() - start, 2)
            record.epochs, record.best_epoch, record.note = len(history.records), history.best_epoch, history.stopped
            trained = history.records[-1].seconds if history.records else 0.0
            self._overhead[fused(choice)] = max(self._overhead.get(fused(choice), 0.0), record.seconds - trained)
            self._keep(score, model, record)
            done(record)
            return score

        def stop_when_out_of_time(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
            # a trial needs min_trial_s of training and what training leaves after it
            if deadline - time.perf_counter() < c.min_trial_s + max(self._overhead.values(), default=0.0):
                study.stop()

        study.optimize(objective, timeout=max(0.0, deadline - time.perf_counter()),
                       callbacks=[stop_when_out_of_time], catch=(RuntimeError, ValueError))


def fused(choice: dict) -> bool:
    """Whether a trial's ``choice`` fuses the item content."""
    return choice.get("content") == "on"


def calibration_params(config: AutoConfig, n_valid: int) -> dict[str, str]:
    """A fused trial's calibration sample (``AutoConfig.calibration_cases_per_minute``),
    as ``make_model`` parameters; none when the budget covers every validation case."""
    per_minute = config.calibration_cases_per_minute
    cap = None if per_minute is None else max(1, int(per_minute * config.minutes))
    if cap is None or cap >= n_valid:
        return {}
    return {"calibration.max_cases": str(cap), "calibration.sample_seed": str(config.seed)}
