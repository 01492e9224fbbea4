"""Evidence for a recommendation that does not come from the model: facts in the data.

* Collaborative: how many customers have both a history item X and the recommended
  item Y ("312 customers who bought X also bought this"), from the binary user x item
  matrix of the interactions. The matrix is built once per dataset (:class:`CoCounts`
  is the cache: keep one per trained run) and stored by column, so one request costs
  a product of a few sparse columns.
* Content: attribute tokens (``brand=acme``, ``categories=Makeup``, ``price_band=2``)
  that Y shares with history items, and the cosine of their text vectors when the
  content has vectors, from an :class:`~shopformer.features.content.ItemContent`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shopformer.features.content import NONE_TOKEN, ItemContent
from shopformer.features.sequences import Sequences
from shopformer.types import EVENT_TYPES

#: past-tense verb per event type, for "customers who <verb> X"
VERBS = {
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added to cart",
    "remove_from_cart": "removed from cart",
    "purchase": "bought",
    "cancel": "cancelled",
    "rate": "rated",
}


class CoCounts:
    """Co-occurrence counts of items over customers.

    ``matrix`` is the binary users x (n_items + 1) matrix in CSC form (a query reads
    columns); ``verb`` says what the interactions were ("bought" when they are all
    purchases), for sentences.
    """

    def __init__(self, matrix: sp.csc_matrix, verb: str = "bought") -> None:
        self.matrix = sp.csc_matrix(matrix, dtype=np.float32)
        self.matrix.data[:] = 1.0
        self.item_users = np.diff(self.matrix.indptr).astype(np.int64)  # (N + 1,)
        self.verb = verb

    @classmethod
    def from_sequences(cls, seqs: Sequences, n_items: int) -> CoCounts:
        """From interaction sequences (row = customer); the verb follows the event types
        when they are all one type, else "chose"."""
        m = seqs.to_csr(n_items + 1, binary=True).tocsc()
        verb = "chose"
        if seqs.event_types is not None and len(seqs.event_types):
            kinds = np.unique(seqs.event_types)
            if len(kinds) == 1:
                verb = VERBS.get(EVENT_TYPES[int(kinds[0])], verb)
        return cls(m, verb)

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1] - 1

    def together(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """(len(xs), len(ys)) int64: customers who have both ``xs[a]`` and ``ys[b]``.
        Indexes outside the matrix (items added after training) count 0."""
        xs, ys = np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.int64)
        out = np.zeros((len(xs), len(ys)), dtype=np.int64)
        okx = (xs > 0) & (xs <= self.n_items)
        oky = (ys > 0) & (ys <= self.n_items)
        if not (okx.any() and oky.any()):
            return out
        # the ys' customers as a (Y, users) mask, read at every x's customers: the work is
        # the xs' column lengths times Y, with no sparse matrix built per request
        ptr, users = self.matrix.indptr, self.matrix.indices
        has_y = np.zeros((int(oky.sum()), self.matrix.shape[0]), dtype=bool)
        for b, y in enumerate(ys[oky].tolist()):
            has_y[b, users[ptr[y] : ptr[y + 1]]] = True
        x_ok = xs[okx]
        sizes = ptr[x_ok + 1] - ptr[x_ok]
        ends = np.cumsum(sizes)
        x_users = users[np.repeat(ptr[x_ok] - (ends - sizes), sizes) + np.arange(ends[-1])]  # x after x
        running = np.zeros((len(has_y), ends[-1] + 1), dtype=np.int64)  # (Y, total + 1)
        np.cumsum(has_y[:, x_users], axis=1, out=running[:, 1:])
        out[np.ix_(okx, oky)] = (running[:, ends] - running[:, ends - sizes]).T
        return out

    def customers(self, items: np.ndarray) -> np.ndarray:
        """Customers who have each item (0 outside the matrix)."""
        items = np.asarray(items, dtype=np.int64)
        ok = (items > 0) & (items <= self.n_items)
        return np.where(ok, self.item_users[np.where(ok, items, 0)], 0)


@dataclass(frozen=True)
class SharedToken:
    """An attribute token the item shares with history items (``positions`` index the
    history, oldest = 0)."""

    token: str  # "field=value"
    positions: tuple[int, ...]

    @property
    def field(self) -> str:
        return self.token.partition("=")[0]

    @property
    def value(self) -> str:
        return self.token.partition("=")[2]


@dataclass(frozen=True)
class ContentMatch:
    """Content evidence for one item: shared tokens (most widely shared first) and the
    history event whose text vector is closest (None without vectors)."""

    shared: tuple[SharedToken, ...]
    text_similarity: float | None = None
    text_position: int | None = None


def content_evidence(content: ItemContent, history: np.ndarray, items: np.ndarray) -> list[ContentMatch]:
    """One :class:`ContentMatch` per item of ``items`` against the history items
    ``history`` (indexes; rows beyond the content table, e.g. products added after
    training, have no content)."""
    history = np.asarray(history, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n_rows = len(content.tokens)
    hist_ok = (history > 0) & (history < n_rows)
    hist_tokens = content.tokens[np.where(hist_ok, history, 0)]  # (L, A); row 0 is empty
    hist_unit = None
    if content.vectors is not None:  # unit rows of the history items only (a request reads no more)
        hist_unit = _unit(content.vectors[np.where(hist_ok, history, 0)])  # (L, V)
    out = []
    for y in items.tolist():  # K items (a page of recommendations)
        if not 0 < y < n_rows:
            out.append(ContentMatch(()))
            continue
        shared = []
        for t in content.tokens[y]:
            if t <= 0 or content.token_names[t] == NONE_TOKEN:
                continue
            where = np.flatnonzero((hist_tokens == t).any(axis=1))
            if len(where):
                shared.append(SharedToken(content.token_names[t], tuple(int(p) for p in where)))
        shared.sort(key=lambda s: (-len(s.positions), s.token))
        sim = pos = None
        y_unit = None if hist_unit is None else _unit(content.vectors[y][None])[0]
        if y_unit is not None and hist_ok.any() and y_unit.any():
            cos = hist_unit @ y_unit
            cos[~hist_ok] = -np.inf
            best = int(np.argmax(cos))
            if np.isfinite(cos[best]) and hist_unit[best].any():
                sim, pos = round(float(cos[best]), 4), best
        out.append(ContentMatch(tuple(shared), sim, pos))
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; zero rows stay zero."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
