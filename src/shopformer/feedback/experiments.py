"""A/B experiments: variants (a name, a run folder, a share of customers), stable
assignment of customers to variants, and starting / stopping one in the store.

Assignment hashes ``"<experiment name>:<customer id>"`` with SHA-256 and places the first
8 bytes, read as a fraction of 2**64, on the variants' cumulative shares: the same
customer always gets the same variant of an experiment, on every process and replica,
with no table of assignments; another experiment (another name) splits customers
independently of this one. The customer is the ``user_id`` (a pseudonym where the server
pseudonymizes, so raw ids never enter the hash); answers with no customer (anonymous
sessions, similar items) are not part of an experiment and get the model served outside it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from shopformer.artifact import run_version
from shopformer.store import EventStore
from shopformer.store import experiments as rows
from shopformer.store.experiments import ExperimentError, ExperimentRow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

__all__ = ["Experiment", "ExperimentError", "Variant", "parse_split", "start_experiment", "stop_experiment"]


@dataclass(frozen=True)
class Variant:
    name: str
    run: Path
    version: str  # the run's version when the experiment started (artifact.run_version)
    share: float  # of the customers, (0, 1]; the shares of an experiment sum to 1


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]  # the first is the control

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ExperimentError(f"experiment name {self.name!r}: 1-64 letters, digits, '_', '.', '-'")
        if len(self.variants) < 2:
            raise ExperimentError("an experiment needs at least two variants")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ExperimentError(f"variant names repeat: {names}")
        for v in self.variants:
            if not NAME.match(v.name):
                raise ExperimentError(f"variant name {v.name!r}: 1-64 letters, digits, '_', '.', '-'")
            if not 0 < v.share <= 1:
                raise ExperimentError(f"variant {v.name!r}: share {v.share} must lie in (0, 1]")
        if abs(sum(v.share for v in self.variants) - 1) > 1e-6:
            raise ExperimentError(f"the shares sum to {sum(v.share for v in self.variants):g}, not 1")

    def assign(self, unit_id: str) -> Variant:
        """The variant of customer ``unit_id``: stable, uniform over the shares."""
        digest = hashlib.sha256(f"{self.name}:{unit_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for v in self.variants:
            edge += v.share
            if u < edge:
                return v
        return self.variants[-1]  # float rounding of the last edge

    def to_rows(self) -> list[dict]:
        return [{"name": v.name, "run": str(v.run), "version": v.version, "share": v.share} for v in self.variants]

    @classmethod
    def from_state(cls, state: str) -> Experiment | None:
        """The experiment the store's ``serving_state`` value names ("" = none)."""
        if not state:
            return None
        data = json.loads(state)
        return cls(data["name"], tuple(Variant(v["name"], Path(v["run"]), v["version"], float(v["share"]))
                                       for v in data["variants"]))


def parse_split(split: str | None, n: int) -> list[float]:
    """``"50/50"`` or ``"90/10"`` (percentages, or any weights) -> shares summing to 1;
    None: equal shares."""
    if split is None:
        return [1.0 / n] * n
    try:
        weights = [float(p) for p in split.split("/")]
    except ValueError:
        raise ExperimentError(f"--split {split!r}: numbers separated by '/', e.g. 50/50") from None
    if len(weights) != n:
        raise ExperimentError(f"--split {split!r} has {len(weights)} parts for {n} variants")
    if any(w <= 0 for w in weights):
        raise ExperimentError(f"--split {split!r}: every part must be > 0")
    total = sum(weights)
    return [w / total for w in weights]


def start_experiment(store: EventStore, name: str, variants: list[tuple[str, Path]], split: str | None = None,
                     created_by: str | None = None) -> Experiment:
    """Check every variant's run folder, then record the experiment as running: every API
    process on ``store`` loads the runs and starts splitting customers within a sync tick.
    Refused (nothing written) when a folder is not a run, a name repeats or is taken, or
    another experiment runs."""
    shares = parse_split(split, len(variants))
    built = []
    for (vname, folder), share in zip(variants, shares):
        folder = Path(folder).resolve()
        if not (folder / "run.json").is_file():
            raise ExperimentError(f"variant {vname!r}: {folder} is not a trained run folder (no run.json)")
        built.append(Variant(vname, folder, run_version(folder), share))
    experiment = Experiment(name, tuple(built))
    rows.start(store, name, experiment.to_rows(), created_by)
    return experiment


def stop_experiment(store: EventStore, name: str) -> ExperimentRow:
    return rows.stop(store, name)


def running(store: EventStore) -> Experiment | None:
    """The running experiment, if any."""
    return Experiment.from_state(rows.running_state(store))
