"""Continuous retraining with a safety gate: snapshot the store, train a run like the
current one (warm-started from it), compare the two on the newest events, promote the
new run only if it is not worse beyond a tolerance, and keep every run as a version.

One round (:func:`retrain`):

1. Snapshot every event and the catalog of the store into ``data_dir/all`` (what the
   store's retention policy keeps; the folder is registered, so erasures reach it).
2. Choose the cutoff: the holdout is the newest slice of events (the last
   ``holdout_days`` days, else the newest ``holdout_fraction`` of the events the run
   reads); it may not reach back into what the current run was trained on, so the
   cutoff moves forward to the end of the current run's training data when it would
   (for a run made here, its own cutoff; otherwise the newest timestamp of its data
   folder). Too few held-out cases (``GateConfig.min_cases``): nothing to decide on, the
   round stops before training.
3. Train the candidate on the events before the cutoff (``data_dir/train``, registered
   too; untimed events count as before): same model and settings as the current run,
   warm-started from it (``feedback.warmstart``) or from scratch, into ``out`` (written
   beside it, renamed into place when complete).
4. The gate (``feedback.gate``): both runs rank the full catalog for every held-out
   event; NDCG@10; promote when ``new >= current * (1 - tolerance)``.
5. Promotion = the candidate itself is published (``store.served.publish_run``, exactly
   what the API's reload writes; every worker and replica follows within its sync
   interval) with an audit entry. The promoted run is the one the gate measured: it has
   not seen the held-out slice. That slice is what the next round trains on (and the
   API reads every customer's newest events at request time anyway); refitting on
   everything would publish a run the gate never measured.

The store keeps every run as a version (:mod:`shopformer.store.versions`) with the
gate's numbers; :func:`rollback` publishes an earlier one again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from shopformer.artifact import Run, load_run, run_version
from shopformer.dataset import load_events
from shopformer.features.sequences import Sequences
from shopformer.feedback.gate import GateConfig, GateResult, compare, holdout_cases, read_events
from shopformer.feedback.warmstart import WarmStartConfig, can_warm_start, train_like
from shopformer.ingest.api import EVENTS_FILE, PRODUCTS_FILE, PSEUDONYMS_FILE, _write_atomically
from shopformer.store import EventStore, export_snapshot
from shopformer.store import exports
from shopformer.store.access import record_audit
from shopformer.store.served import publish_run, served_run
from shopformer.store.versions import ModelVersion, add_version, find_version, get_version, set_status

log = logging.getLogger("shopformer.retrain")


class RetrainError(ValueError):
    """A retrain or rollback that cannot go ahead; the message says why."""


@dataclass(frozen=True)
class RetrainConfig:
    """warm: warm-start from the current run (Transformers); False trains from scratch
        (other models always are).
    epochs: planned epochs of the new run; None: the lineage's plan (the epochs of the
        first run a chain of retrains started from, carried in each run's ``run.json``), or
        for a warm start ``warm_epoch_share`` of it (at least 1): early stopping on
        validation still ends either sooner.
    holdout_days / holdout_fraction: the newest slice held out for the gate: the last
        ``holdout_days`` days of events when set, else the newest ``holdout_fraction`` of
        the events the run reads (the temporal protocol's test share).
    publish: publish a run that passes the gate (else it is recorded as ``approved``).
    gate: tolerance and case counts (``feedback.gate``).
    warm_start: how a warm start begins and fine-tunes (``feedback.warmstart``)."""

    warm: bool = True
    epochs: int | None = None
    warm_epoch_share: float = 0.3
    holdout_days: float | None = None
    holdout_fraction: float = 0.1
    publish: bool = True
    gate: GateConfig = field(default_factory=GateConfig)
    #: chosen on validation (benchmarks/results/retrain_warm_recipes.md): a 3x peak learning
    #: rate and new items' rows at their neighbours' reach the scratch run's best in 7 epochs
    warm_start: WarmStartConfig = field(default_factory=lambda: WarmStartConfig(new_rows="neighbours", lr_scale=3.0))


@dataclass
class Outcome:
    """What a round did. status: promoted | approved | refused | skipped."""

    status: str
    message: str
    folder: Path | None = None
    version: ModelVersion | None = None
    gate: GateResult | None = None
    details: dict = field(default_factory=dict)


def planned_epochs(current: Run, warm: bool, config: RetrainConfig) -> tuple[int | None, int | None]:
    """(epochs the new run plans, the lineage's full plan) for a retrain of ``current``.
    The full plan is carried from run to run: a warm run's own settings hold its shortened
    plan, and taking a share of that every round would shrink later rounds (and a scratch
    retrain like it) towards one epoch. None for models trained without epochs."""
    train = getattr(getattr(current.model, "config", None), "train", None)
    plan = (current.info.get("retrain") or {}).get("planned_epochs") or getattr(train, "epochs", None)
    epochs = config.epochs
    if epochs is None and plan is not None:
        epochs = max(1, round(plan * config.warm_epoch_share)) if warm else plan
    return epochs, plan


# -- the cutoff -----------------------------------------------------------------------
def trained_until(run: Run) -> datetime:
    """The run saw no event at or after this time: a retrained run's cutoff, else just
    after the newest timestamp of the data folder it was trained from."""
    made_here = run.info.get("retrain")
    if made_here and made_here.get("cutoff"):
        return datetime.fromisoformat(made_here["cutoff"])
    path = Path(run.info.get("data_dir", "")) / EVENTS_FILE
    newest = pl.read_parquet(path, columns=["timestamp"])["timestamp"].max() if path.is_file() else None
    if newest is None:
        raise RetrainError(f"cannot tell which events {run.folder} was trained on: its data folder "
                           f"{run.info.get('data_dir')} is gone or has no timestamps, so no holdout can be "
                           "proved unseen by it; retrain once with --from-scratch from a run made by `retrain`, "
                           "or train it again with `shopformer train` on a snapshot of the store")
    return newest + timedelta(microseconds=1)


def choose_cutoff(read: pl.DataFrame, current: Run, config: RetrainConfig) -> tuple[datetime, str]:
    """(cutoff, how it was chosen) for events ``read`` (``gate.read_events``)."""
    ts = read["timestamp"].drop_nulls()
    if ts.len() == 0:
        raise RetrainError("the store has no timed events of the types the run reads: nothing to hold out")
    if config.holdout_days is not None:
        cut, how = ts.max() - timedelta(days=config.holdout_days), f"the last {config.holdout_days:g} days"
    else:
        epoch = ts.dt.epoch("us").to_numpy()
        q = int(np.quantile(epoch, 1.0 - config.holdout_fraction))
        cut = datetime.fromtimestamp(q / 1e6, tz=timezone.utc)
        how = f"the newest {config.holdout_fraction:.0%} of events"
    seen = trained_until(current)
    if seen > cut:
        return seen, f"{how} would reach into the current run's training data: the events after it"
    return cut, how


def _training_folder(store: EventStore, snapshot: Path, out: Path, cutoff: datetime) -> int:
    """``out``: the snapshot's events before ``cutoff`` (and untimed ones) and its catalog;
    registered in the store like the snapshot, so erasures reach it. Returns the events."""
    events = load_events(snapshot).filter(pl.col("timestamp").is_null() | (pl.col("timestamp") < cutoff))
    payload: dict = {EVENTS_FILE: events, PRODUCTS_FILE: pl.read_parquet(snapshot / PRODUCTS_FILE)}
    marker = snapshot / PSEUDONYMS_FILE
    if marker.exists():
        payload[PSEUDONYMS_FILE] = marker.read_text()
    _write_atomically(out, payload)
    exports.register(store, out)
    if not marker.exists():
        (out / PSEUDONYMS_FILE).unlink(missing_ok=True)
    return events.height


# -- versions and publishing ------------------------------------------------------------
def check_loads(folder: Path) -> Run:
    """Load ``folder`` and score an empty history, as an API process does before serving it."""
    if not (folder / "run.json").is_file():
        raise RetrainError(f"{folder} no longer exists or is not a run folder (no run.json); nothing changed")
    run = load_run(folder)
    scores = run.model.score(Sequences(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64)))
    if scores.shape != (1, len(run.items) + 1):
        raise RetrainError(f"{folder}: model scores have shape {scores.shape}, expected (1, {len(run.items) + 1})")
    return run


def version_of(store: EventStore, run: Run) -> ModelVersion:
    """The store's version of ``run``, recorded as ``imported`` when it has none yet."""
    version = run_version(run.folder)
    found = find_version(store, version)
    if found is not None:
        return found
    return add_version(store, version, str(run.folder.resolve()), "imported", "imported",
                       train_seconds=run.info.get("fit_seconds"))


def _publish(store: EventStore, run: Run) -> None:
    done = publish_run(store, run.folder, run_version(run.folder), run.users.ids)
    if done:
        log.info("erasure receipts %s complete: %s was trained without those users", done, run.folder)


# -- one round --------------------------------------------------------------------------
def retrain(store: EventStore, current_folder: Path, out: Path, data_dir: Path, config: RetrainConfig,
            actor: str = "cli", say: Callable[[str], None] = print) -> Outcome:
    """One round (see the module docstring)."""
    out = Path(out)
    if out.exists():
        raise RetrainError(f"{out} exists: give a new folder for the new run (a served run is never overwritten)")
    current = check_loads(Path(current_folder))
    warm = config.warm and can_warm_start(current) is None
    if config.warm and not warm:
        say(f"note: refitting from scratch: {can_warm_start(current)}")
    n_events, n_products = export_snapshot(store, Path(data_dir) / "all")
    events = load_events(Path(data_dir) / "all")
    read = read_events(events, current.data_config)
    cutoff, how = choose_cutoff(read, current, config)
    rows, n_held = holdout_cases(read, cutoff, config.gate)
    say(f"snapshot: {n_events} events, {n_products} products; holdout: {how}, from {cutoff.isoformat()} "
        f"({n_held} events, {len(rows)} cases)")
    if len(rows) < config.gate.min_cases:
        return Outcome("skipped", f"only {len(rows)} held-out events (need {config.gate.min_cases}) after "
                                  f"{cutoff.isoformat()}: nothing to decide on; {current.folder} stays",
                       details={"cutoff": cutoff.isoformat(), "cases": len(rows)})
    seen = trained_until(current)
    fresh = read.filter((pl.col("timestamp") >= seen) & (pl.col("timestamp") < cutoff)).height
    if fresh == 0:
        return Outcome("skipped", f"no events between the end of {current.folder}'s training data "
                                  f"({seen.isoformat()}) and the holdout: nothing new to train on; it stays",
                       details={"cutoff": cutoff.isoformat(), "cases": len(rows)})

    n_train = _training_folder(store, Path(data_dir) / "all", Path(data_dir) / "train", cutoff)
    epochs, plan = planned_epochs(current, warm, config)
    info = {"retrain": {"mode": "warm" if warm else "scratch", "cutoff": cutoff.isoformat(), "planned_epochs": plan,
                        "parent": {"folder": str(current.folder.resolve()), "version": run_version(current.folder)}}}
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    say(f"training {current.model.name} {'warm-started from' if warm else 'from scratch like'} {current.folder} "
        f"on {n_train} events before the cutoff" + (f", {epochs} epochs planned" if epochs else ""))
    try:
        trained = train_like(current, Path(data_dir) / "train", partial, warm, epochs, info,
                             config.warm_start, seen)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    candidate = check_loads(out)
    parent = version_of(store, current)
    history = getattr(trained.model, "history", None)
    gate = compare(current, candidate, events, cutoff, config.gate)
    if gate is None:  # cannot happen after the count above, unless the snapshot changed under us
        raise RetrainError("the holdout changed while training; run again")
    metrics = {**gate.to_dict(), "train_events": n_train, "snapshot_events": n_events,
               "items": {"kept": trained.items_kept, "added": trained.items_added, "total": len(candidate.items)},
               "epochs_run": len(history.records) if history else None,
               "best_valid": history.best_valid if history and math.isfinite(history.best_valid) else None}
    version = run_version(out)
    if not gate.promote:
        row = add_version(store, version, str(out.resolve()), info["retrain"]["mode"], "refused", parent.version_id,
                          trained.seconds, metrics)
        record_audit(store, actor, "retrain_refuse", str(out.resolve()), "ok",
                     {"version_id": row.version_id, "current": gate.current, "new": gate.candidate,
                      "cases": gate.cases, "kept": parent.run_version})
        return Outcome("refused", f"kept {current.folder}: {gate.reason}", out, row, gate, metrics)
    if not config.publish:
        row = add_version(store, version, str(out.resolve()), info["retrain"]["mode"], "approved", parent.version_id,
                          trained.seconds, metrics)
        return Outcome("approved", f"passed, not published (--no-publish): {gate.reason}", out, row, gate, metrics)
    previous = served_run(store)
    _publish(store, candidate)
    row = add_version(store, version, str(out.resolve()), info["retrain"]["mode"], "promoted", parent.version_id,
                      trained.seconds, metrics)
    record_audit(store, actor, "retrain_promote", str(out.resolve()), "ok",
                 {"version_id": row.version_id, "version": version, "previous": previous["version"] if previous else None,
                  "current": gate.current, "new": gate.candidate, "cases": gate.cases})
    return Outcome("promoted", f"published {out}: {gate.reason}", out, row, gate, metrics)


# -- rollback ---------------------------------------------------------------------------
def rollback(store: EventStore, version_id: int, actor: str = "cli") -> tuple[ModelVersion, dict | None]:
    """Publish version ``version_id``'s run again (its folder must still hold that run
    and load); the version served before becomes ``rolled_back``. Returns the version and
    the previously served ``{"folder", "version"}``. On any error nothing changes but a
    ``failed`` audit entry."""
    v = get_version(store, version_id)
    try:
        if v is None:
            raise RetrainError(f"no version {version_id}: `shopformer versions` lists them")
        if v.status == "refused":
            raise RetrainError(f"version {version_id} failed the gate and was never served; publish it deliberately "
                               "with POST /v1/admin/reload if you mean to")
        run = check_loads(Path(v.folder))
        now_version = run_version(run.folder)
        if now_version != v.run_version:
            raise RetrainError(f"{v.folder} now holds another run (version {now_version}, recorded "
                               f"{v.run_version}); nothing changed")
    except (RetrainError, OSError, ValueError) as exc:
        record_audit(store, actor, "rollback", v.folder if v else str(version_id), "failed", {"error": str(exc)[:500]})
        raise RetrainError(str(exc)) from None
    previous = served_run(store)
    _publish(store, run)
    before = find_version(store, previous["version"]) if previous else None
    if before is not None and before.version_id != v.version_id:
        set_status(store, before.version_id, "rolled_back")
    if v.status in ("rolled_back", "approved"):
        set_status(store, v.version_id, "promoted")
    record_audit(store, actor, "rollback", v.folder, "ok",
                 {"version_id": v.version_id, "version": v.run_version,
                  "previous": previous["version"] if previous else None})
    return get_version(store, v.version_id), previous


# -- repeating ----------------------------------------------------------------------------
def parse_interval(text: str) -> float:
    """``90s``, ``30m``, ``6h``, ``1d`` (or plain seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        seconds = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise RetrainError(f"--every {text!r}: give a duration such as 90s, 30m, 6h or 1d") from None
    if seconds <= 0:
        raise RetrainError(f"--every {text!r}: the interval must be positive")
    return seconds


def every(interval_s: float, round_: Callable[[int], None], stop: threading.Event,
          say: Callable[[str], None] = print) -> int:
    """Run ``round_(n)`` for n = 1, 2, ... starting every ``interval_s`` seconds (at once
    when a round took longer) until ``stop`` is set; a round that fails is reported and
    the next one still runs. Returns the rounds started."""
    n = 0
    while not stop.is_set():
        n += 1
        started = time.monotonic()
        try:
            round_(n)
        except Exception as exc:  # noqa: BLE001 - one bad round must not end the schedule
            say(f"round {n} failed: {type(exc).__name__}: {exc}")
            log.exception("retrain round %d failed", n)
        wait = max(0.0, interval_s - (time.monotonic() - started))
        if not stop.is_set() and wait:
            say(f"next round in {wait / 3600:.2f} h (Ctrl-C stops)")
        stop.wait(wait)
    return n


def outcome_json(o: Outcome) -> str:
    return json.dumps({"status": o.status, "message": o.message, "folder": str(o.folder) if o.folder else None,
                       "version": o.version.to_dict() if o.version else None, "details": o.details}, default=str)
