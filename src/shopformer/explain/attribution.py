"""Occlusion attribution: which of a user's history events drove each recommended score.

For a history of L events the model scores L + 1 histories as ONE batch: the full
history and, for each event e, the history without e. Then

    attribution[e, j] = score_full[j] - score_without_e[j]

is what item j loses when event e is taken away. It asks the model itself (no
gradients, no surrogate model), so it works for any :class:`~shopformer.models.base.
Recommender` (SASRec, EASE, item-kNN alike), and what it claims can be checked by the
same removal (``benchmarks/explain_fidelity.py``). An event whose removal changes
nothing (a repeated item for the set-based baselines, an event older than the
Transformer's window) gets 0.

Only the explained items' columns are needed, so scoring goes through
:func:`item_scorer`: for models whose structure is known it computes exactly those
columns (dot-product models: user vectors times the items' rows of the item table;
EASE / item-kNN: the history's rows of the item-item matrix) instead of scoring the
whole catalog for every occluded history; any other model has its ``score()`` sliced.
Both give the same numbers (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shopformer.features.sequences import Sequences, without

#: (histories with R rows, (R, K) item indexes per row, full_row) -> ((R, K) float32
#: scores, and with ``full_row`` the (N + 1,) scores of row 0 over the whole catalog,
#: else None). The full row is what rule provenance ranks against; asking for it here
#: lets a model reuse the work it did for row 0 instead of a second call.
ItemScorer = Callable[[Sequences, np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]]
#: (one history, its E occluded positions, (K,) items, full_row, the history's user
#: vector or None) -> ((E + 1, K) scores of the full history then the history without
#: each event, and the catalog row or None)
Occluder = Callable[[Sequences, np.ndarray, np.ndarray, bool, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


#: what may compute a Transformer's occluded histories (OcclusionConfig.precision)
PRECISIONS = ("float32", "int8", "bfloat16")


@dataclass(frozen=True)
class OcclusionConfig:
    """max_events: occlude only the latest ``max_events`` events (None = all); older
    events get no attribution. It bounds the batch at max_events + 1 histories: for a
    Transformer the occlusion costs about max_events^2 / 2 tokens, so this is what
    keeps the p99 latency of a request flat for long histories. 10 covers the whole
    test history of 84% of Amazon Beauty's users (median 5 events); the fidelity
    benchmark measured the same top/random ratios with 10 as with 20.
    batch_rows: histories scored per model call in :func:`attribute_many` (bounds
    memory on big benchmark batches).
    reuse_prefix: for a causal Transformer, compute the prefix the occluded histories
    share once (models/occlusion.py: same numbers, about half the work or less); False
    scores every occluded history from scratch.
    precision: what computes a causal Transformer's occluded histories (other models
    always score in float32). ``"float32"`` (the default): the network itself, exact.
    ``"int8"``: a copy whose linear layers run int8 weights (PyTorch's dynamic
    quantization, an API it marks deprecated); the occlusion's time is in those layers,
    and on Beauty it was about a fifth faster per request; the explained score stays
    the served one when the caller hands in the user vector, the attributions carry
    the quantization error (Beauty: the same top-attributed event for 99.4% of users,
    the same top 3 for 92%). ``"bfloat16"``: a bfloat16 copy of the network (no faster
    on CPUs without bfloat16 arithmetic; ~0.2% relative error)."""

    max_events: int | None = 10
    batch_rows: int = 4096
    reuse_prefix: bool = True
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.max_events is not None and self.max_events < 1:
            raise ValueError(f"max_events must be >= 1 or None, got {self.max_events}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")


@dataclass(frozen=True)
class Attribution:
    """Occlusion result for one history and K explained items.

    ``values[e, j]`` belongs to event ``positions[e]`` (an index into ``history``, 0 =
    oldest) and item ``items[j]``; positive = the event raised the item's score.
    """

    history: np.ndarray  # (L,) item indexes, oldest first
    positions: np.ndarray  # (E,) indexes into history of the occluded events, ascending
    items: np.ndarray  # (K,) explained item indexes
    full: np.ndarray  # (K,) scores with the whole history
    values: np.ndarray  # (E, K) full - score without that event
    #: (N + 1,) scores of the whole catalog with the full history, when asked for
    catalog: np.ndarray | None = None

    def shares(self) -> np.ndarray:
        """(E, K) each event's share of the item's positive attribution (columns sum to
        1, or are all 0 when no event raised the item)."""
        pos = np.clip(np.nan_to_num(self.values, nan=0.0, neginf=0.0, posinf=0.0), 0.0, None)
        total = pos.sum(axis=0, keepdims=True)
        return np.divide(pos, total, out=np.zeros_like(pos), where=total > 0)

    def ranked(self, j: int) -> np.ndarray:
        """Rows of ``values`` for item ``j``, largest attribution first (ties: the more
        recent event first)."""
        v = np.nan_to_num(self.values[:, j], nan=-np.inf)
        return np.lexsort((-self.positions, -v))


# -- histories -------------------------------------------------------------------------
def concat(parts: list[Sequences]) -> Sequences:
    """Rows of several ``Sequences`` stacked into one (timestamps / event types kept only
    when every part has them)."""
    if not parts:
        return Sequences(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    lengths = np.concatenate([p.lengths for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return Sequences(offsets, np.concatenate([p.items for p in parts]), cat("timestamps"), cat("event_types"))


def _occluded_positions(length: int, config: OcclusionConfig) -> np.ndarray:
    first = 0 if config.max_events is None else max(0, length - config.max_events)
    return np.arange(first, length)


def occlusion_batch(history: Sequences, row: int, config: OcclusionConfig) -> tuple[Sequences, np.ndarray]:
    """The full history of row ``row`` then one copy without each occluded event:
    (E + 1 rows, the E occluded positions)."""
    length = int(history.lengths[row])
    positions = _occluded_positions(length, config)
    drops = np.zeros((len(positions) + 1, length), dtype=bool)
    drops[np.arange(1, len(positions) + 1), positions] = True
    return without(history, row, drops), positions


# -- scoring only the needed columns ----------------------------------------------------
def item_scorer(model: object) -> ItemScorer:
    """The fastest exact way to score given items for ``model`` (see the module
    docstring). The model classes are checked explicitly; anything else is sliced out of
    ``model.score()``."""
    from shopformer.models.ease import EASE
    from shopformer.models.itemknn import ItemKNN
    from shopformer.models.sequential import SASRecRecommender

    if isinstance(model, SASRecRecommender):  # BERT4Rec too: same user_vectors / table
        return lambda h, items, full_row=False: _vector_scores(model, h, items, full_row)
    if isinstance(model, EASE) and model.weights is not None:
        return lambda h, items, full_row=False: _linear_scores(model, model.weights, h, items, full_row)
    if isinstance(model, ItemKNN) and model.similarity is not None:
        return lambda h, items, full_row=False: _linear_scores(model, model.similarity, h, items, full_row)
    return lambda h, items, full_row=False: sliced_scores(model, h, items, full_row)


def occluder_for(model: object, precision: str = "float32") -> Occluder | None:
    """A structure-aware occlusion for ``model``, or None: for one causal Transformer the
    occluded histories' shared prefix is computed once (models/occlusion.py), in the
    given precision (see :class:`OcclusionConfig`)."""
    from shopformer.models.sequential import SASRecRecommender

    if not isinstance(model, SASRecRecommender) or model.config.members != 1 or not model.config.arch.causal:
        return None

    def occlude(history: Sequences, positions: np.ndarray, items: np.ndarray, full_row: bool,  # noqa: ANN202
                vector: np.ndarray | None = None):
        import torch

        from shopformer.models.occlusion import occlusion_user_vectors

        with torch.no_grad():
            full = None if vector is None else torch.as_tensor(vector, dtype=torch.float32)
            users = occlusion_user_vectors(model, history, positions, full, precision)  # (E + 1, D)
            return _dot_scores(model, users, items, full_row)  # the same K items for every row

    return occlude


def sliced_scores(
    model: object, histories: Sequences, items: np.ndarray, full_row: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Any model: the whole catalog scored, the asked columns kept."""
    scores = np.asarray(model.score(histories), dtype=np.float32)
    cols = np.take_along_axis(scores, np.asarray(items, dtype=np.int64), axis=1)
    return cols, (scores[0].copy() if full_row and len(scores) else None)


def _vector_scores(model, histories: Sequences, items: np.ndarray, full_row: bool) -> tuple[np.ndarray, np.ndarray | None]:  # noqa: ANN001
    """Dot-product models: (R, D) user vectors x the items' (R, K, D) table rows; the
    full row is row 0's user vector against the whole table (exactly ``score()``)."""
    import torch

    with torch.no_grad():
        return _dot_scores(model, model.user_vectors(histories), items, full_row)


def _dot_scores(model, users, items: np.ndarray, full_row: bool) -> tuple[np.ndarray, np.ndarray | None]:  # noqa: ANN001
    """(R, D) user vectors (a torch tensor) x the items' rows of the item table: (R, K)
    items, one list per row, or (K,) items for every row (their K rows read once); with
    ``full_row`` also row 0 against the whole table."""
    import torch

    table = model.output_table()  # (N + 1, D)
    index = torch.as_tensor(np.asarray(items, dtype=np.int64))
    if index.ndim == 1:
        cols = (users @ table[index].T).numpy().astype(np.float32, copy=False)  # (R, K)
    else:
        cols = torch.einsum("rd,rkd->rk", users, table[index]).numpy().astype(np.float32, copy=False)
    full = None
    if full_row and len(users):
        full = (users[:1] @ table.T)[0].numpy().astype(np.float32, copy=True)
        full[0] = -np.inf  # padding, as score() does
    return cols, full


def _linear_scores(
    model, weights, histories: Sequences, items: np.ndarray, full_row: bool  # noqa: ANN001
) -> tuple[np.ndarray, np.ndarray | None]:
    """``h @ W`` models (EASE, item-kNN) on the binary history h: the sum of W[i, j] over
    the row's distinct history items i, read from the small W[history, items] block.
    Rows with no usable item get the model's own empty-history scores."""
    from shopformer.models import _common

    items = np.asarray(items, dtype=np.int64)
    h = _common.interaction_matrix(histories, model.n_items)  # binary, duplicates merged
    row_of = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
    hist_u, hist_at = np.unique(h.indices, return_inverse=True)
    item_u, item_at = np.unique(items, return_inverse=True)
    if hasattr(weights, "toarray"):  # sparse (item-kNN)
        block = weights[hist_u][:, item_u].toarray()
    else:  # dense (EASE): only the block, never whole rows
        block = weights[np.ix_(hist_u, item_u)]
    block = np.asarray(block, dtype=np.float32)  # (distinct history items, distinct asked items)
    item_at = item_at.reshape(items.shape)
    out = np.zeros(items.shape, dtype=np.float32)
    empty = np.diff(h.indptr) == 0
    if h.nnz:
        # each (row, history item) pair gives that item's weights to the row's asked
        # items; pairs are grouped by row (CSR order), so one reduceat sums them
        pairs = block[hist_at[:, None], item_at[row_of]]  # (nnz, K)
        starts = h.indptr[:-1][~empty]
        out[~empty] = np.add.reduceat(pairs, starts, axis=0)
    if empty.any():
        fallback = model.score(Sequences(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64)))[0]
        out[empty] = fallback[items[empty]]
    full = None
    if full_row and len(histories):  # one row of h @ W: cheap for these models
        full = np.asarray(model.score(histories.rows(np.array([0]))), dtype=np.float32)[0]
    return out, full


# -- attribution ---------------------------------------------------------------------------
def attribute(
    model: object,
    history: Sequences,
    items: np.ndarray,
    config: OcclusionConfig = OcclusionConfig(),
    scorer: ItemScorer | None = None,
    catalog: bool = False,
    user_vector: np.ndarray | None = None,
) -> Attribution:
    """Occlusion attribution of one history (row 0 of ``history``) for ``items``: one
    model call over the full history plus one copy without each event. With
    ``catalog`` the result also holds the full history's scores over the catalog.
    ``user_vector``: the whole history's (D,) user vector when the caller has it (the
    served query of a Transformer): the causal Transformer's occlusion then does not
    recompute it; other models ignore it."""
    vectors = None if user_vector is None else np.asarray(user_vector, dtype=np.float32).reshape(1, -1)
    return attribute_many(
        model, history.rows(np.array([0])), np.asarray(items).reshape(1, -1), config, scorer, catalog, vectors
    )[0]


def attribute_many(
    model: object,
    histories: Sequences,
    items: np.ndarray,
    config: OcclusionConfig = OcclusionConfig(),
    scorer: ItemScorer | None = None,
    catalog: bool = False,
    user_vectors: np.ndarray | None = None,
) -> list[Attribution]:
    """:func:`attribute` for U users at once: ``items`` is (U, K); every user's
    occluded histories go into the same batches of ``config.batch_rows`` rows (with
    ``catalog``, one user per batch: the catalog row is asked of each batch's row 0).
    ``user_vectors``: (U, D) the histories' own user vectors, see :func:`attribute`."""
    histories = histories.without_padding()  # index 0 is no event the model saw
    items = np.asarray(items, dtype=np.int64).reshape(len(histories), -1)
    occluder = occluder_for(model, config.precision) if config.reuse_prefix else None
    if occluder is not None:  # one call per user, its shared prefix computed once
        out = []
        for u in range(len(histories)):
            one = histories.rows(np.array([u]))
            pos = _occluded_positions(int(one.lengths[0]), config)
            block, full = occluder(one, pos, items[u], catalog, None if user_vectors is None else user_vectors[u])
            out.append(Attribution(one.items.copy(), pos, items[u], block[0], block[0][None, :] - block[1:], full))
        return out
    scorer = scorer or item_scorer(model)
    parts, positions = [], []
    for u in range(len(histories)):  # per user: a few array ops, no model call
        rows, pos = occlusion_batch(histories, u, config)
        parts.append(rows)
        positions.append(pos)
    sizes = np.array([len(p) + 1 for p in positions], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    batch = concat(parts)
    owner = np.repeat(np.arange(len(histories)), sizes)
    scores = np.empty((len(batch), items.shape[1]), dtype=np.float32)
    rows_of_catalog: dict[int, np.ndarray] = {}
    if catalog:  # one call per user, so that its full history is row 0 of the call
        bounds = [(int(starts[u]), int(starts[u + 1])) for u in range(len(histories))]
    else:  # chunks of rows, users may straddle them
        bounds = [(a, min(a + config.batch_rows, len(batch))) for a in range(0, len(batch), config.batch_rows)]
    for a, b in bounds:
        sel = np.arange(a, b)
        scores[sel], full = scorer(batch.rows(sel), items[owner[sel]], catalog)
        if catalog:
            rows_of_catalog[int(owner[a])] = full
    out = []
    for u, pos in enumerate(positions):
        block = scores[starts[u] : starts[u + 1]]
        full = block[0]
        out.append(Attribution(histories.row(u).copy(), pos, items[u], full, full[None, :] - block[1:],
                               rows_of_catalog.get(u)))
    return out
