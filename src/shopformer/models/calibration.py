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
  and with it how many of the latest events the text channel averages. A catalog with
  attributes but no text or image vectors gets the same channel on its IDF-weighted
  attribute tokens (what content kNN compares), added to a network trained without it.

All are chosen from a small grid by NDCG@10 on the validation cases (the ones early
stopping reads, with whatever share of new products they hold, or a seeded sample of
them: ``CalibrationConfig.max_cases``); the test split is never read. Only the output
side changes: user vectors are computed as trained.

Each candidate's NDCG@10 is counted rather than sorted (a target's place is how many
items score above it): the same values ``evaluate`` gives and the grid gave before, in
about a fifth of the CPU time (``benchmarks/calibration_speed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models.content_knn import token_idf
from shopformer.models.item_encoder import token_unit_rows

_CUTOFF = 10  # NDCG@10, what early stopping reads
_CHUNK = 2048  # cases whose NDCG@10 are summed together (and the bias's spread is measured on the first)
_PART = 256  # cases whose scores are made at once for the whole grid (~150 MB on 12k items)
_HEAD = 1024  # the fewest columns counted first (see _case_ndcg)
_BLOCK_ENTRIES = 200_000  # scores counted at a time: 1.6 MB of float64, in cache
_SPARSE_SHARE = 0.05  # channel rows with at most this share of nonzeros are multiplied as sparse


@dataclass(frozen=True)
class CalibrationConfig:
    """enabled: calibrate after ``fit`` when the model has content and validation cases.
    id_scales: candidate weights of the ID embedding in the output table.
    text_weights: candidate weights of the text channel (used only with content vectors;
        0 = no text channel; the trained weight, if any, is always a candidate too).
    text_histories: candidate numbers of latest events the text channel averages.
    max_channel_tokens: a catalog with no vectors gets a channel on its attribute tokens
        (IDF-weighted, as content kNN compares them) when it has at most this many; each
        is a column of the served item table.
    new_item_biases: candidate biases for items with no training interactions
        (``SASRecConfig.new_item_bias``), in units of the spread of a user's scores over
        the catalog (their standard deviation, averaged over validation users); tried
        after the weights above are chosen, and only when validation has cases whose
        target is such an item ("new-product cases"). Empty = no bias.
    new_item_warm_cost: None (the default): the bias with the best NDCG@10 over all
        validation cases (no bias when that is best). A share instead: the bias with the
        best NDCG@10 on the new-product cases among those that cost the other cases at
        most this share of their NDCG@10 (against no bias): how much accuracy on known
        products a shop gives for ranking new ones.
    new_item_warm_floor: instead of that relative cost, the NDCG@10 the other cases
        must keep (e.g. 97% of an ID-only model's on the same validation cases, which is
        what the cold-start benchmark asks).
    max_cases: choose on at most this many validation cases, a random sample drawn with
        ``sample_seed`` (None: all of them, the default). The grid's time grows with the
        cases (about 2 ms a case on one CPU thread for Amazon Beauty's 12k items and 64
        candidates), so short ``train --auto`` budgets take a sample
        (``AutoConfig.calibration_cases_per_minute``). A sample of m of n cases measures
        each candidate with sqrt(n / m) times the noise, so candidates within that noise
        may swap; what it cost on Beauty: benchmarks/results/calibration_speed.md.
    sample_seed: the seed of that sample (the same cases for every candidate)."""

    enabled: bool = True
    id_scales: tuple[float, ...] = (1.0, 0.7, 0.5, 0.3)
    text_weights: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
    text_histories: tuple[int, ...] = (5, 20, 50)
    max_channel_tokens: int = 2048
    new_item_biases: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
    new_item_warm_cost: float | None = None
    new_item_warm_floor: float | None = None
    max_cases: int | None = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.max_cases is not None and self.max_cases < 1:
            raise ValueError(f"calibration.max_cases must be at least 1 (or None: all cases), got {self.max_cases}")


@dataclass(frozen=True)
class Calibration:
    """The chosen weights and every candidate's validation NDCG@10."""

    id_scale: float
    text_weight: float
    text_history: int
    valid_ndcg: float
    grid: tuple[dict, ...]
    channel: str = ""  # what the chosen channel compares: "vectors", "tokens" or "" (none)
    new_item_bias: float = 0.0
    #: every bias tried: its value, validation NDCG@10 on new-product / other / all cases
    bias_grid: tuple[dict, ...] = ()
    #: how many validation cases the values above were measured on (all, or ``max_cases``)
    cases: int = 0


def recent_text_query(history: Sequences, unit_vectors: np.ndarray, last: int) -> np.ndarray:
    """(U, V) mean unit vector of each row's latest ``last`` events (what the text
    channel dots with the items' unit vectors); zeros for an empty row."""
    h = history.latest(last)
    total = np.zeros((len(h), unit_vectors.shape[1]), dtype=np.float32)
    np.add.at(total, np.repeat(np.arange(len(h)), h.lengths), unit_vectors[h.items])
    return total / np.maximum(h.lengths, 1)[:, None]


def _ndcg_sum(scores: np.ndarray, cases: EvalCases) -> float:
    """Sum over ``cases`` of NDCG@10 of (b, N + 1) ``scores``."""
    return float(_ndcg(scores, cases).sum())


def _ndcg(scores: np.ndarray, cases: EvalCases) -> np.ndarray:
    """(b,) NDCG@10 of each case from (b, N + 1) ``scores``."""
    return _case_ndcg(scores, None, cases)


def _case_ndcg(base: np.ndarray, shift: np.ndarray | None, cases: EvalCases) -> np.ndarray:
    """(b,) NDCG@10 of each case scored ``base + shift`` ((b, N + 1) plus (b, N + 1),
    (N + 1,) or None), as ``evaluate`` computes it (history and column 0 masked, the
    order ``top_k`` sorts in: higher score first, ties to the lower index), without
    sorting: a target's place is how many items score above it, plus the lower indexes
    it ties with. Counted on the first eighth of the catalog first: a target with 10
    items above it there is out of the top 10 whatever the rest scores, which decides
    most cases; each score is the same sum of the same two numbers as the whole matrix's."""
    from shopformer.evaluate import metrics

    t, history, width = cases.targets, cases.history, base.shape[1]
    target_row = np.repeat(np.arange(len(t)), t.lengths)
    history_row = np.repeat(np.arange(len(history)), history.lengths)
    own = _scores_at(base, shift, target_row, t.items)
    masked = (t.items == 0) | np.isin(target_row * width + t.items, history_row * width + history.items)
    own[masked] = -np.inf
    above = np.zeros(len(own), dtype=np.int64)
    open_ = own > -np.inf  # targets that may still be in the top 10
    head = min(width, max(_HEAD, width // 8))
    for columns in (slice(0, head), slice(head, width)):
        for sel in _blocks(np.flatnonzero(open_), columns):
            scores = _masked_block(base, shift, history, target_row[sel], columns)
            above[sel] += np.count_nonzero(scores > own[sel, None], axis=1)
        open_ &= above < _CUTOFF
    for sel in _blocks(np.flatnonzero(open_), slice(0, width)):  # equal scores at lower indexes rank first
        scores = _masked_block(base, shift, history, target_row[sel], slice(0, width))
        above[sel] += np.count_nonzero((scores == own[sel, None]) & (np.arange(width) < t.items[sel, None]), axis=1)
    found = np.flatnonzero(open_ & (above < _CUTOFF))
    hits = np.zeros((len(t), _CUTOFF), dtype=bool)
    hits[target_row[found], above[found]] = True
    return metrics.ndcg(hits, t.lengths, _CUTOFF)


def _scores_at(base: np.ndarray, shift: np.ndarray | None, rows: np.ndarray,
               columns: np.ndarray | slice) -> np.ndarray:
    """``(base + shift)[rows, columns]`` (``rows`` an index array: a new array, entry by
    entry for index ``columns``, a block for a slice), without making the whole sum."""
    out = base[rows, columns]
    if shift is None:
        return out
    return out + (shift[columns] if shift.ndim == 1 else shift[rows, columns])


def _blocks(targets: np.ndarray, columns: slice) -> list[np.ndarray]:
    """``targets`` in groups of about _BLOCK_ENTRIES scores over ``columns`` (cache-sized)."""
    size = max(1, _BLOCK_ENTRIES // max(1, columns.stop - columns.start))
    return [targets[i: i + size] for i in range(0, len(targets), size)]


def _masked_block(base: np.ndarray, shift: np.ndarray | None, history: Sequences, rows: np.ndarray,
                  columns: slice) -> np.ndarray:
    """``(base + shift)[rows, columns]`` with each row's history (and column 0) at -inf."""
    scores = _scores_at(base, shift, rows, columns)
    lengths = history.lengths[rows]
    at = np.repeat(history.offsets[rows] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    items, row = history.items[at], np.repeat(np.arange(len(rows)), lengths)
    inside = (items >= columns.start) & (items < columns.stop)
    scores[row[inside], items[inside] - columns.start] = -np.inf
    if columns.start == 0:
        scores[:, 0] = -np.inf
    return scores


def channel_rows(model, config: CalibrationConfig) -> tuple[str, np.ndarray] | None:  # noqa: ANN001
    """What the channel compares, as (source, (N + 1, W) unit rows): the text / image
    vectors when the catalog has them, else the IDF-weighted attribute tokens when there
    are at most ``config.max_channel_tokens`` of them; None when neither."""
    content = model.content
    if content.vectors is not None:
        unit = content.vectors / np.maximum(np.linalg.norm(content.vectors, axis=1, keepdims=True), 1e-12)
        unit[0] = 0
        return "vectors", unit.astype(np.float32)
    if 1 < content.n_tokens <= config.max_channel_tokens:
        idf = torch.from_numpy(token_idf(content.tokens, content.n_tokens))
        return "tokens", token_unit_rows(torch.from_numpy(content.tokens), idf).numpy()
    return None


def calibrate(model, valid: EvalCases, config: CalibrationConfig = CalibrationConfig()) -> Calibration:  # noqa: ANN001
    """Choose ``id_scale``, ``text_weight`` and ``text_history`` for a fitted single
    ``SASRecRecommender`` with content (see the module docstring); the model is not
    changed here."""
    valid = _sample(valid, config.max_cases, config.sample_seed)
    module, arch = model.module, model.config.arch
    n, d = arch.n_items, arch.d_model
    table = model.item_representations()  # (N + 2, D): known * ID + content
    with torch.no_grad():
        id_part = (module.item_emb.weight * module.known[:, None].float())[: n + 1]
        if not arch.item_ids:  # items are their content alone: no ID part to weigh
            id_part = torch.zeros_like(id_part)
        content_part = table[: n + 1] - id_part
    scales = config.id_scales if arch.item_ids else (1.0,)
    hidden = model.user_vectors(valid.history)[:, :d].numpy()  # the channel's columns are rebuilt below
    # (text weight, text history) pairs; without a channel only "no channel"
    channel = [(0.0, arch.text_history)]
    queries: dict[int, np.ndarray] = {}
    source = channel_rows(model, config)
    if source is not None:
        unit = source[1]
        learned = [(module.text_weight.item(), arch.text_history)] if module.text_weight is not None else []
        histories = tuple(dict.fromkeys([*config.text_histories, arch.text_history]))
        channel = list(dict.fromkeys([*channel, *((w, h) for w in config.text_weights if w for h in histories),
                                      *learned]))
        history = valid.history.without_padding()
        queries = {h: recent_text_query(history, unit, h) for h in histories}
        channel_of = _channel_product(unit)
    content_t, id_t = content_part.numpy().T, id_part.numpy().T
    tables = {s: content_t + s * id_t for s in scales}  # (D, N + 1), one per scale
    # Parts of a few hundred cases: a part's scores per scale and weighted channel per
    # (weight, history) are made once and shared by every candidate, while they are
    # still in cache. The sums run over chunks of 2048 cases as they always did, so the
    # values are the same to the last bit.
    per_case = {(s, w, h): np.empty(len(valid)) for s in scales for w, h in channel}
    for rows, cases in _chunks(valid, _PART):
        bases = {s: hidden[rows] @ table_t for s, table_t in tables.items()}
        near = {h: channel_of(q[rows]) for h, q in queries.items()}  # (b, N + 1) channel scores
        for w, h in channel:
            shift = w * near[h] if w else None
            for s, base in bases.items():
                per_case[s, w, h][rows] = _case_ndcg(base, shift, cases)
    sums = {key: sum(float(v[i: i + _CHUNK].sum()) for i in range(0, len(v), _CHUNK)) for key, v in per_case.items()}
    grid = [{"id_scale": s, "text_weight": w, "text_history": h, "valid_NDCG@10": round(total / len(valid), 6)}
            for (s, w, h), total in sums.items()]
    best = max(grid, key=lambda g: g["valid_NDCG@10"])  # first of equals: the larger id_scale, smaller weight
    s, w, h = best["id_scale"], best["text_weight"], best["text_history"]

    def chosen_scores(rows: np.ndarray) -> np.ndarray:
        scores = hidden[rows] @ tables[s]
        if w:
            scores += w * channel_of(queries[h][rows])
        return scores

    bias, bias_grid, valid_ndcg = _choose_bias(module.known[: n + 1].numpy(), valid, config, chosen_scores)
    return Calibration(s, w, h, best["valid_NDCG@10"] if not bias_grid else valid_ndcg, tuple(grid),
                       source[0] if source is not None and w else "", bias, bias_grid, len(valid))


def _channel_product(unit: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``query -> query @ unit.T``, the channel's (b, N + 1) scores. Attribute tokens
    (a few of hundreds per item) are multiplied as sparse rows, about 8 times faster on
    Amazon Beauty; the products are the same sums in another order (float64, within
    1e-16 of the dense product)."""
    if np.count_nonzero(unit) > _SPARSE_SHARE * unit.size:
        unit_t = np.ascontiguousarray(unit.T)
        return lambda query: query @ unit_t
    rows = sp.csr_matrix(unit)

    def product(query: np.ndarray) -> np.ndarray:
        out = np.empty((len(query), rows.shape[0]), dtype=np.result_type(rows.dtype, query.dtype))
        for i in range(0, len(query), _PART):
            item_major = rows @ query[i: i + _PART].T  # (N + 1, part)
            for j in range(0, out.shape[1], 256):  # transposed in tiles: 6 times faster than at once
                out[i: i + _PART, j: j + 256] = item_major[j: j + 256].T
        return out

    return product


def _chunks(valid: EvalCases, size: int | None = None):  # noqa: ANN202
    """(row indexes, their cases) of ``valid`` in chunks of ``size`` (default _CHUNK)."""
    size = size or _CHUNK
    for start in range(0, len(valid), size):
        rows = np.arange(start, min(start + size, len(valid)))
        yield rows, _cases_at(valid, rows)


def _cases_at(valid: EvalCases, rows: np.ndarray) -> EvalCases:
    return EvalCases(valid.users[rows], valid.history.rows(rows), valid.targets.rows(rows))


def _sample(valid: EvalCases, max_cases: int | None, seed: int) -> EvalCases:
    """At most ``max_cases`` of ``valid``, drawn at random with ``seed``, in their order."""
    if max_cases is None or len(valid) <= max_cases:
        return valid
    return _cases_at(valid, np.sort(np.random.default_rng(seed).choice(len(valid), max_cases, replace=False)))


def _choose_bias(known: np.ndarray, valid: EvalCases, config: CalibrationConfig, scores_of):  # noqa: ANN001
    """(bias, its grid, its validation NDCG@10) for items with no training interactions
    (see ``CalibrationConfig.new_item_warm_cost``); (0, (), 0) when there is nothing to
    choose from."""
    new = (~known).astype(np.float32)
    new[0] = 0
    t = valid.targets  # a new-product case: every target is such an item
    n_new = np.bincount(np.repeat(np.arange(len(t)), t.lengths), weights=new[t.items], minlength=len(t))
    cold = (t.lengths > 0) & (n_new == t.lengths)
    if not config.new_item_biases or not new.any() or not cold.any() or cold.all():
        return 0.0, (), 0.0
    multiples = (0.0, *config.new_item_biases)
    cold_sum, warm_sum = np.zeros(len(multiples)), np.zeros(len(multiples))
    spread = None
    for rows, cases in _chunks(valid):
        base = scores_of(rows)
        if spread is None:  # the unit of the biases: from the first chunk's users
            spread = float(np.mean(base.std(axis=1)))
        for i, m in enumerate(multiples):
            shift = np.float32(round(m * spread, 6)) * new  # the value recorded and served
            per_case = _case_ndcg(base, shift, cases)
            cold_sum[i] += per_case[cold[rows]].sum()
            warm_sum[i] += per_case[~cold[rows]].sum()
    n_cold, n_warm = int(cold.sum()), int((~cold).sum())
    grid = tuple({"new_item_bias": round(m * spread, 6), "spread_multiple": m,
                  "valid_new_NDCG@10": round(float(c) / n_cold, 6), "valid_other_NDCG@10": round(float(wm) / n_warm, 6),
                  "valid_NDCG@10": round(float(c + wm) / len(valid), 6)} for m, c, wm in zip(multiples, cold_sum, warm_sum))
    if config.new_item_warm_floor is None and config.new_item_warm_cost is None:
        pick = max(range(len(grid)), key=lambda i: grid[i]["valid_NDCG@10"])
    else:
        floor = (config.new_item_warm_floor * n_warm if config.new_item_warm_floor is not None
                 else (1 - config.new_item_warm_cost) * warm_sum[0])
        allowed = [i for i in range(len(grid)) if warm_sum[i] >= floor] or [0]  # none: no bias
        pick = max(allowed, key=lambda i: cold_sum[i])
    return grid[pick]["new_item_bias"], grid, grid[pick]["valid_NDCG@10"]
