"""Two scoring weights of a fused Transformer, chosen on validation after training.

How a fused model ranks the products it knows against the ones it does not (new
products, which have no ID embedding) is set by two numbers that gradient steps do
not find well:

- ``id_scale``, the weight of the ID embedding in the output table. Training with
  ``id_dropout`` shows most items by their content alone; scoring a known product with
  its whole ID embedding then ranks it above a new one by more than the evidence says.
- ``text_weight``, the weight of the raw text similarity to the latest events (the
  text channel, ``SASRecConfig.text_channel``). A scalar under Adam moves about one
  learning rate per step, so from 1.0 it cannot reach 8 in a run of a thousand steps;
  and with it how many of the latest events the text channel averages.

All are chosen from a small grid by NDCG@10 on the validation cases (the ones early
stopping reads, with whatever share of new products they hold); the test split is
never read. Only the output side changes: user vectors are computed as trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases


@dataclass(frozen=True)
class CalibrationConfig:
    """enabled: calibrate after ``fit`` when the model has content and validation cases.
    id_scales: candidate weights of the ID embedding in the output table.
    text_weights: candidate weights of the text channel (used only with content vectors;
        0 = no text channel; the trained weight, if any, is always a candidate too).
    text_histories: candidate numbers of latest events the text channel averages."""

    enabled: bool = True
    id_scales: tuple[float, ...] = (1.0, 0.7, 0.5, 0.3)
    text_weights: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
    text_histories: tuple[int, ...] = (5, 20)


@dataclass(frozen=True)
class Calibration:
    """The chosen weights and every candidate's validation NDCG@10."""

    id_scale: float
    text_weight: float
    text_history: int
    valid_ndcg: float
    grid: tuple[dict, ...]


def recent_text_query(history: Sequences, unit_vectors: np.ndarray, last: int) -> np.ndarray:
    """(U, V) mean unit vector of each row's latest ``last`` events (what the text
    channel dots with the items' unit vectors); zeros for an empty row."""
    h = history.latest(last)
    total = np.zeros((len(h), unit_vectors.shape[1]), dtype=np.float32)
    np.add.at(total, np.repeat(np.arange(len(h)), h.lengths), unit_vectors[h.items])
    return total / np.maximum(h.lengths, 1)[:, None]


class _GridScorer:
    """Scores of precomputed user parts for one candidate, handed out in the order the
    evaluation asks for them (it walks the cases front to back in batches)."""

    def __init__(self, hidden, query, table_t, unit_t, text_weight: float):
        self.parts = hidden, query
        self.table = table_t  # (D, N + 1): content + id_scale * known IDs
        self.unit_t, self.text_weight = unit_t, text_weight
        self.cursor = 0

    def score(self, history: Sequences) -> np.ndarray:
        rows = slice(self.cursor, self.cursor + len(history))
        self.cursor += len(history)
        hidden, query = self.parts
        s = hidden[rows] @ self.table
        if self.text_weight:
            s += self.text_weight * (query[rows] @ self.unit_t)
        s[:, 0] = -np.inf
        return s


def calibrate(model, valid: EvalCases, config: CalibrationConfig = CalibrationConfig()) -> Calibration:  # noqa: ANN001
    """Choose ``id_scale``, ``text_weight`` and ``text_history`` for a fitted single
    ``SASRecRecommender`` with content (see the module docstring); the model is not
    changed here."""
    from shopformer.evaluate.protocol import EvalConfig, evaluate

    module, arch = model.module, model.config.arch
    n, d = arch.n_items, arch.d_model
    table = model.item_representations()  # (N + 2, D): known * ID + content
    with torch.no_grad():
        id_part = (module.item_emb.weight * module.known[:, None].float())[: n + 1]
        content_part = table[: n + 1] - id_part
    hidden = model.user_vectors(valid.history)[:, :d].numpy()  # the text channel's columns are rebuilt below
    vectors = model.content.vectors
    # (text weight, text history) pairs; without vectors only "no text channel"
    channel = [(0.0, arch.text_history)]
    queries: dict[int, np.ndarray] = {}
    unit_t = None
    if vectors is not None:
        learned = [(module.text_weight.item(), arch.text_history)] if module.text_weight is not None else []
        histories = tuple(dict.fromkeys([*config.text_histories, arch.text_history]))
        channel = list(dict.fromkeys([*channel, *((w, h) for w in config.text_weights if w for h in histories),
                                      *learned]))
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        unit[0] = 0
        history = valid.history.without_padding()
        queries = {h: recent_text_query(history, unit.astype(np.float32), h) for h in histories}
        unit_t = np.ascontiguousarray(unit.T, dtype=np.float32)
    grid = []
    content_t, id_t = content_part.numpy().T, id_part.numpy().T
    for s in config.id_scales:
        table_t = content_t + s * id_t  # (D, N + 1), one per scale
        for w, h in channel:
            scorer = _GridScorer(hidden, queries.get(h), table_t, unit_t, w)
            res = evaluate(scorer, valid, n, EvalConfig(cutoffs=(10,)), progress=False)
            grid.append({"id_scale": s, "text_weight": w, "text_history": h,
                         "valid_NDCG@10": round(res.metrics["NDCG@10"], 6)})
    best = max(grid, key=lambda g: g["valid_NDCG@10"])  # first of equals: the larger id_scale, smaller weight
    return Calibration(best["id_scale"], best["text_weight"], best["text_history"], best["valid_NDCG@10"], tuple(grid))
