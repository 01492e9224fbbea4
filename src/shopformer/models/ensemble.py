"""Several trained SASRec networks scored as one (``TransformerConfig.members``).

The mean of dot-product scores is itself a dot product: an item is the concatenation of
its member embeddings, a user the concatenation of the member user vectors divided by
the member count. So an ensemble keeps the single-model interface (``forward`` gives
hidden states, ``item_table`` the items) and is served through the same vector index.
"""

from __future__ import annotations

import torch
from torch import nn

from shopformer.models.sasrec import SASRec


class SASRecEnsemble(nn.Module):
    def __init__(self, members: list[SASRec]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)
        self.config = members[0].config  # every member has the same catalog and positions
        self.widths = [m.config.d_model for m in members]

    @property
    def mask_token(self) -> int:
        return self.config.n_items + 1

    @property
    def content(self):  # noqa: ANN201 - the first member's ContentEncoder, or None
        return self.members[0].content

    def item_representations(self) -> torch.Tensor:
        """(N + 2, sum of member widths): the members' item tables side by side."""
        return torch.cat([m.item_representations() for m in self.members], dim=1)

    def forward(
        self,
        items: torch.Tensor,
        types: torch.Tensor | None = None,
        gaps: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
        last_only: bool = False,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # items: (B, T) -> (B, T, sum of widths), (B, 1, ...) with last_only;
        # h . table = mean of the members' scores
        parts = self._parts(table)
        hidden = [m(items, types, gaps, table=t, last_only=last_only, context=context) for m, t in zip(self.members, parts)]
        return torch.cat(hidden, dim=-1) / len(self.members)

    def item_table(self, table: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, sum of output widths) output embeddings; row 0 (padding) is never
        an answer. Each member's own ``item_table`` (its text channel included)."""
        return torch.cat([m.item_table(t) for m, t in zip(self.members, self._parts(table))], dim=1)

    def _parts(self, table: torch.Tensor | None) -> list:
        """Each member's columns of ``item_representations()`` (None: members compute their own)."""
        return [None] * len(self.members) if table is None else list(table.split(self.widths, dim=1))
