"""SASRec-style causal Transformer over a behaviour sequence (the tensor maths only).

Item embeddings are shared between the input and the output: the score of item i after
position t is ``h_t · E_i``. Training, vocabularies and devices live in
``shopformer.models.sequential``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shopformer.models.item_encoder import ContentEncoder, id_keep_mask, token_unit_rows
from shopformer.features.time_context import check_holidays
from shopformer.models.text_adapter import TextAdapterConfig
from shopformer.models.layers import Block, FastDropout, attention_mask
from shopformer.models.time_context import TimeContextEmbedding
from shopformer.types import EVENT_TYPES


@dataclass(frozen=True)
class SASRecConfig:
    """Architecture.

    n_items: catalog size without padding (set from the data).
    max_len: positions the model reads (the latest ``max_len`` events).
    d_model, n_layers, n_heads, dropout: the usual Transformer sizes.
    attn_dropout: dropout on attention weights. Off by default: on CPU it forces
        PyTorch's unfused attention, a 1.6x slower training step on ML-1M (T=200).
    event_types: add an event-type embedding (view / cart / purchase ...).
    time_gap_buckets: >0 adds an embedding of the (log-bucketed) time since the
        previous event; needs timestamps.
    time_context: add the calendar (``models/time_context.py``): day of year and days to
        the next of ``holidays`` of each event and of the moment the next item is
        predicted for (the next event's time in training, the request's when serving),
        plus the time from the last event to that moment; needs timestamps. Causal only.
    text_adapter: > 0 maps the content vectors through UniSRec's mixture of this many
        whitening experts (``models/text_adapter.py``) instead of one linear map: the
        transferable item space of ``models/transfer.py``.
    item_ids: False = items are their content alone (no ID embedding in the table), so
        the whole network carries over to a catalog with other items; True (default)
        fuses an ID embedding as described above.
    holidays: the dates ``time_context`` counts down to: ``"MM-DD"`` every year or
        ``"YYYY-MM-DD"`` once (default Christmas).
    causal: True = next-item model; False = bidirectional (Cloze) model.
    pre_norm: True = pre-norm blocks and a final LayerNorm; False = post-norm blocks
        with a LayerNorm on the input embeddings (the original SASRec layout).
    content_tokens, content_width, content_dim: sizes of the item content the model
        fuses with its ID embeddings (token vocabulary, tokens per item, vector width;
        all 0 = ID-only). Set from an ``ItemContent`` at fit time.
    id_dropout: share of items whose ID embedding is hidden at each training step, so
        that content alone learns to place an item (cold start).
    text_channel: with content vectors, score items also by the similarity of their
        (unit-length) vector to the mean vector of the latest ``text_history`` events,
        times a learned weight: score = h . item + w * (mean recent vector . vector).
        Both parts are one dot product (the user vector and the item table carry the
        vectors as extra columns), so retrieval is unchanged. It hands the network the
        raw text similarity that its d_model-wide content projection cannot keep,
        which is what places products never seen in training.
    channel_tokens: the channel compares IDF-weighted attribute tokens (unit rows, one
        column per token) instead of vectors: for catalogs with attributes only.
    id_output_scale: weight of the ID embedding in the output table (the input keeps
        it whole); below 1 it narrows the lead known products have over new ones.
        Chosen on validation after training (``models.calibration``), as is the text
        channel's weight.
    new_item_bias: added to the score of every item with no training interactions (new
        products, placed by content alone), so they can be ranked where content says
        against products whose IDs have been trained; one more column in the user vector
        (the bias) and the item table (1 for such items). Chosen on validation.
    """

    n_items: int = 0
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    attn_dropout: float = 0.0
    event_types: bool = False
    time_gap_buckets: int = 0
    causal: bool = True
    pre_norm: bool = True
    content_tokens: int = 0
    content_width: int = 0
    content_dim: int = 0
    id_dropout: float = 0.0
    text_channel: bool = False
    text_history: int = 20
    channel_tokens: bool = False
    id_output_scale: float = 1.0
    new_item_bias: float = 0.0
    time_context: bool = False
    holidays: tuple[str, ...] = ("12-25",)
    text_adapter: int = 0
    item_ids: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "holidays", tuple(self.holidays))  # a list when read from JSON
        check_holidays(self.holidays)
        if self.time_context and not self.causal:
            raise ValueError("time_context: only the causal model (sasrec) reads the time of the prediction")


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.config = config
        c = config
        # Row 0 = padding; row n_items + 1 = [MASK] for the Cloze objective.
        self.item_emb = nn.Embedding(c.n_items + 2, c.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        n_types = len(EVENT_TYPES) + 1
        self.type_emb = nn.Embedding(n_types, c.d_model, padding_idx=0) if c.event_types else None
        n_gaps = c.time_gap_buckets + 1
        self.gap_emb = nn.Embedding(n_gaps, c.d_model, padding_idx=0) if c.time_gap_buckets else None
        self.time_emb = TimeContextEmbedding(c.d_model) if c.time_context else None
        self.drop = FastDropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads, c.dropout, c.attn_dropout, pre_norm=c.pre_norm)
                                    for _ in range(c.n_layers))
        # Pre-norm: one LayerNorm on the output; post-norm: one on the input embeddings.
        self.ln_f = nn.LayerNorm(c.d_model)
        self.content = None
        if c.content_tokens > 1 or c.content_dim:
            adapter = TextAdapterConfig(c.content_dim, c.d_model, c.text_adapter, c.dropout) if c.text_adapter else None
            self.content = ContentEncoder(c.n_items + 2, c.d_model, c.content_tokens, c.content_width, c.content_dim,
                                          adapter)
        elif not c.item_ids:
            raise ValueError("arch.item_ids=false: items need content (product text vectors) to be represented")
        # Items with training interactions; the others are placed by content alone.
        self.register_buffer("known", torch.ones(c.n_items + 2, dtype=torch.bool))
        self.text_weight = None
        if c.text_channel:
            width = c.content_tokens if c.channel_tokens else c.content_dim
            if width <= 1:
                raise ValueError("text_channel needs content vectors (text or image features) or attribute tokens")
            self.register_buffer("unit_vectors", torch.zeros(c.n_items + 2, width))  # (N + 2, V)
            if c.channel_tokens:
                self.register_buffer("token_idf", torch.zeros(c.content_tokens))
            self.text_weight = nn.Parameter(torch.tensor(1.0))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding, nn.EmbeddingBag)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    @property
    def mask_token(self) -> int:
        return self.config.n_items + 1

    def item_representations(self) -> torch.Tensor:
        """(N + 2, D): padding, the items, [MASK]; ID fused with content when present."""
        if self.content is None:
            return self.item_emb.weight
        if not self.config.item_ids:  # content alone (transferable)
            return self.content()
        keep = id_keep_mask(self.known, self.config.id_dropout, self.training)  # (N + 2, 1)
        return self.item_emb.weight * keep + self.content()

    def forward(
        self,
        items: torch.Tensor,
        types: torch.Tensor | None = None,
        gaps: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
        last_only: bool = False,
        rows: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # items, types, gaps: (B, T) left-padded with 0, T <= max_len -> hidden (B, T, D)
        # context: (B, T, 5) time context (Windows.context), with config.time_context
        # table: item_representations() when the caller already has it (one per step)
        # last_only: hidden (B, 1, D) at the last position only; the last block then asks
        #   one query, not T (inference reads nothing else)
        # rows: (B, T, D) the items' table rows, already looked up (DP-SGD differentiates
        #   each user's rows rather than the whole table, train/per_user.py)
        x = self.embed(items, types, gaps, table, rows, context)  # (B, T, D)
        mask = attention_mask(items, self.config.causal)  # (B, 1, T, T)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == len(self.blocks) - 1)
        return self.output(self.final(x), items, last_only)  # (B, T or 1, D [+ V])

    def output(self, hidden: torch.Tensor, items: torch.Tensor, last_only: bool) -> torch.Tensor:
        """Hidden states -> what is dotted with ``item_table()``: with the text channel
        the weighted mean vector of the latest events is appended, then with a new-item
        bias a column holding it (see the config)."""
        if self.config.new_item_bias:
            bias = hidden.new_full((*hidden.shape[:2], 1), self.config.new_item_bias)  # (B, T or 1, 1)
            return torch.cat([self._with_channel(hidden, items, last_only), bias], dim=-1)
        return self._with_channel(hidden, items, last_only)

    def _with_channel(self, hidden: torch.Tensor, items: torch.Tensor, last_only: bool) -> torch.Tensor:
        if self.text_weight is None:
            return hidden
        v = self.unit_vectors[items]  # (B, T, V); padding and [MASK] rows are 0
        real = (items > 0) & (items <= self.config.n_items)
        H, T = self.config.text_history, items.shape[1]
        if last_only:
            total, count = v[:, -H:].sum(1, keepdim=True), real[:, -H:].sum(1, keepdim=True)[..., None]
        else:  # causal: position t reads events t - H + 1 .. t (running sums, minus H back)
            total, count = v.cumsum(1), real.cumsum(1)[..., None].float()
            total = total - torch.nn.functional.pad(total, (0, 0, H, 0))[:, :T]
            count = count - torch.nn.functional.pad(count, (0, 0, H, 0))[:, :T]
        query = self.text_weight * total / count.clamp(min=1)  # (B, T or 1, V)
        return torch.cat([hidden, query], dim=-1)

    def set_vectors(self, vectors: torch.Tensor) -> None:
        """Fill the text channel's unit vectors of rows 0..len(vectors)-1 (row 0 stays 0)."""
        with torch.no_grad():
            unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
            self.unit_vectors.zero_()
            self.unit_vectors[: len(unit)] = unit
            self.unit_vectors[0] = 0

    def set_token_channel(self, idf: torch.Tensor) -> None:
        """Fill the channel's rows from the items' content tokens and the tokens' IDF
        (kept, so rows added later, for new products, are weighted the same way)."""
        with torch.no_grad():
            self.token_idf.copy_(idf)
            self.unit_vectors.copy_(token_unit_rows(self.content.tokens, self.token_idf))
            self.unit_vectors[0] = 0

    def embed(self, items, types=None, gaps=None, table=None, rows=None, context=None) -> torch.Tensor:  # noqa: ANN001
        """(B, T) inputs -> (B, T, D): what the first block reads."""
        T = items.shape[1]
        if rows is None:
            rows = (self.item_representations() if table is None else table)[items]  # (B, T, D)
        pos = torch.arange(self.config.max_len - T, self.config.max_len, device=items.device)
        x = rows * self.config.d_model**0.5 + self.pos_emb(pos)[None]  # (B, T, D)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        if self.gap_emb is not None and gaps is not None:
            x = x + self.gap_emb(gaps)
        if self.time_emb is not None and context is not None:
            x = x + self.time_emb(context)
        if not self.config.pre_norm:
            x = self.ln_f(x)
        return self.drop(x * (items > 0)[..., None])

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output -> hidden states (pre-norm: the final LayerNorm)."""
        return self.ln_f(x) if self.config.pre_norm else x

    def item_table(self, table: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, D [+ V] [+ 1]) output embeddings; row 0 (padding) is never a valid
        answer. With the text channel each row also carries its unit vector, with a
        new-item bias a last column that is 1 for items with no training interactions."""
        table = self.item_representations() if table is None else table
        n, scale = self.config.n_items, self.config.id_output_scale
        rows = table[: n + 1]
        if scale != 1.0 and self.content is not None and self.config.item_ids:  # known items' ID part, scaled
            rows = rows - (1.0 - scale) * self.item_emb.weight[: n + 1] * self.known[: n + 1, None]
        if self.text_weight is not None:
            rows = torch.cat([rows, self.unit_vectors[: n + 1]], dim=1)
        if self.config.new_item_bias:
            new = (~self.known[: n + 1]).to(rows.dtype)[:, None]  # (N + 1, 1)
            new[0] = 0
            rows = torch.cat([rows, new], dim=1)
        return rows
