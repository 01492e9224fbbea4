"""Occlusion for the causal Transformer with the shared prefix computed once.

Occlusion scores a history H (L events) and, for each event i, H without i. Positions
are right-aligned, so in "H without i" the events after i keep their positions while
the events before i move one step later: exactly where they sit in S = "H without its
last event". Causal attention never looks ahead, so those prefix events have the same
hidden states, in every layer, as S's first events. Each occluded row therefore only
needs its suffix (the events after i) computed, attending to S's cached keys and
values for the prefix: about L^2 / 2 tokens instead of L^2 (fewer still when the
history is longer than the window), with the same numbers as scoring every row from
scratch (tested).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from shopformer.features.sequences import Sequences, without
from shopformer.models.sasrec import SASRec
from shopformer.models.sequential import _tensors


#: query tokens per attention call in :func:`shared_prefix_last_hidden`: the packed
#: tokens of the default occlusion (the latest 10 events of a 50-event window: about
#: 100) are one call; occluding every event of a long history is split into groups of
#: rows, each attending to the shared prefix and its own tokens only, so the mask and
#: the scores stay (group, prefix + group) instead of (P, P)
GROUP_TOKENS = 512


def _at(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return x if index is None else x[index]


def _groups(rr: torch.Tensor, jj: torch.Tensor, first_own: torch.Tensor, source: int
            ) -> list[tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]]:
    """Whole rows, in order, gathered into groups of at most GROUP_TOKENS query tokens
    (a longer row alone): per group its packed token indexes (the queries), the keys
    they may read (the source's tokens and the group's own, once each) and the
    (1, 1, queries, keys) mask. One group of every token (queries and keys None: all)
    when they fit."""
    def mask(queries: torch.Tensor | None, keys: torch.Tensor | None) -> torch.Tensor:
        qr, qj, kr, kj = _at(rr, queries)[:, None], _at(jj, queries)[:, None], _at(rr, keys)[None], _at(jj, keys)[None]
        same_row = (qr == kr) & (kj <= qj)  # causal within the row
        prefix = (kr == source) & (qr != source) & (kj < first_own[qr])  # the shared prefix before the row's own
        return (same_row | prefix)[None, None]  # True = may attend

    if len(rr) <= GROUP_TOKENS:
        return [(None, None, mask(None, None))]
    counts = torch.bincount(rr, minlength=len(first_own)).tolist()
    starts = [0, *itertools.accumulate(counts)]  # each row's first packed token
    src = torch.arange(starts[source], starts[source + 1])
    out, a = [], 0
    while a < len(counts):
        b = a + 1
        while b < len(counts) and starts[b + 1] - starts[a] <= GROUP_TOKENS:
            b += 1
        queries = torch.arange(starts[a], starts[b])
        keys = torch.unique(torch.cat([src, queries]))  # sorted: packed order
        out.append((queries, keys, mask(queries, keys)))
        a = b
    return out


@torch.no_grad()
def shared_prefix_last_hidden(
    module: SASRec,
    rows: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    own: torch.Tensor,
    source: int,
    table: torch.Tensor,
) -> torch.Tensor:
    """Last-position hidden state of each row, computing only each row's own tokens.

    rows: (items, types, gaps), each (R, T), left-padded as the model reads them.
    own: (R,) how many of each row's last slots are its own; the slots before them hold
        the same events, at the same positions, as row ``source`` (whose own tokens are
        all of its events), so their keys and values are taken from it.
    Every row's own tokens are packed into one sequence of P tokens; each layer projects
    them in one call and they attend under a mask: a token sees the earlier own tokens
    of its row and the source's tokens in the slots before its row's own ones, which is
    exactly what it sees in its row alone (padding never packed, never seen). No per-row
    key or query padding, no per-row copies of the prefix; the last layer projects
    queries for the R last tokens only. Returns (R, D).
    """
    if not module.config.causal:
        raise ValueError("prefix reuse needs a causal model")
    items = rows[0]
    R, T = items.shape
    slot = torch.arange(T)
    first_own = T - own  # (R,)
    mine = slot[None, :] >= first_own[:, None]  # (R, T)
    rr, jj = (mine & (items > 0)).nonzero(as_tuple=True)  # packed own tokens, row-major
    last = (jj == T - 1).nonzero(as_tuple=True)[0]  # (R,) one per row, in row order
    groups = _groups(rr, jj, first_own, source)

    u = module.embed(*rows, table=table)[rr, jj]  # (P, D)
    n = len(module.blocks)
    for depth, block in enumerate(module.blocks):
        x = block.attn_input(u)
        if depth < n - 1:
            q, k, v = block.attn.heads(x)  # (P, H, D/H)
            attended = torch.cat([block.attn.attend(_at(q, g)[None], _at(k, ks)[None], _at(v, ks)[None], m)[0]
                                  for g, ks, m in groups])  # (P, D): groups are consecutive
            u = block.finish(u, attended)  # (P, D)
        else:  # the last block: only each row's last token asks
            q, k, v = block.attn.heads(x, queries=last)  # q (R, H, D/H); k, v (P, H, D/H)
            parts = []
            for g, ks, m in groups:
                # the group's rows' last tokens: their places among its queries, and their rows
                if g is None:
                    at, mine = last, torch.arange(R)
                else:
                    at, mine = (g[:, None] == last[None, :]).nonzero(as_tuple=True)
                parts.append(block.attn.attend(q[mine][None], _at(k, ks)[None], _at(v, ks)[None], m[:, :, at])[0])
            u = block.finish(u[last], torch.cat(parts))  # (R, D)
    return module.output(module.final(u[:, None]), items, last_only=True)[:, 0]  # (R, D [+ V])


@torch.no_grad()
def occlusion_user_vectors(model, history: Sequences, positions: np.ndarray,  # noqa: ANN001
                           full: torch.Tensor | None = None, precision: str = "float32") -> torch.Tensor:
    """(E + 1, D) user vectors of ``history`` (one row, no padding) and of the history
    without each event in ``positions`` (E indexes into it), as
    ``model.user_vectors`` would give for those E + 1 histories, with the shared prefix
    computed once. ``model`` is a fitted causal :class:`SASRecRecommender`. ``full``:
    the (D,) user vector of the whole history when the caller has it (serving ranked
    with it), so that row is not computed again (ignored in bfloat16, whose rows must
    all come from the copy for their differences to mean anything). ``precision``
    (float32 out either way): ``"bfloat16"``, the network's bfloat16 copy computes every
    row; ``"int8"``, its int8 copy (``SASRecRecommender.int8_copy``) the occluded rows,
    the full history's row staying the exact one when given."""
    arch = model.config.arch
    if not arch.causal or model.config.members != 1:
        raise ValueError("prefix reuse needs one causal network (not BERT4Rec, not an ensemble)")
    if arch.time_context:
        # removing an event also changes the query time its predecessor reads (the next
        # event's), so no prefix is shared: every history is encoded whole (float32), now
        L = int(history.lengths[0])
        drops = np.zeros((len(positions) + 1, L), dtype=bool)
        drops[np.arange(1, len(positions) + 1), np.asarray(positions, dtype=np.int64)] = True
        return model.user_vectors(without(history, 0, drops)).float()
    module = model._require()
    if module.training:
        module.eval()
    bfloat16 = precision == "bfloat16"
    module, table = model.bfloat16_copy() if bfloat16 else (module, model.item_representations())
    if precision == "int8":
        module = model.int8_copy()
    elif precision not in ("float32", "bfloat16"):
        raise ValueError(f"unknown precision {precision!r}")
    L = int(history.lengths[0])
    positions = np.asarray(positions, dtype=np.int64)
    T = min(L, arch.max_len)
    inside = positions >= L - T  # an event outside the window changes nothing
    if L < 2 or not inside.any():
        full = module(*_tensors(model._windows(history, arch.max_len).trim()), table=table, last_only=True)[:, -1]
        out = full.float().expand(len(positions) + 1, -1).clone()
        if L == 1 and len(positions):  # the only event removed: the empty history
            out[1:] = model.user_vectors(Sequences(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64)))
        return out

    # One batch: the full history F (unless given), S = every event but the last, then
    # the history without each occluded event inside the window; F and S compute all
    # their tokens, the occluded rows only the events after the removed one.
    given = full is not None and not bfloat16
    f = 0 if given else 1  # rows before S
    occl = positions[inside]
    drops = np.zeros((len(occl) + f + 1, L), dtype=bool)
    drops[f, L - 1] = True
    drops[np.arange(f + 1, len(occl) + f + 1), occl] = True
    rows = _tensors(model._windows(without(history, 0, drops), arch.max_len).trim())
    t_s = min(L - 1, arch.max_len)
    # own tokens of an occluded row: the events after the removed one (the row without
    # the last event is S itself: its last token alone is recomputed, same numbers)
    own = torch.from_numpy(np.concatenate([[T, t_s][1 - f:], np.clip(L - 1 - occl, 1, t_s)]))
    vec = shared_prefix_last_hidden(module, rows, own, f, table).float()  # (f + 1 + E', D)
    first = torch.as_tensor(full, dtype=torch.float32).reshape(1, -1) if given else vec[:1]
    out = first.expand(len(positions) + 1, -1).clone()
    out[1:][torch.from_numpy(inside)] = vec[f + 1:]
    return out
