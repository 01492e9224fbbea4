"""Self-supervised objectives for the sequence model, options of its training.

Contrastive (CL4SRec, Xie et al. 2022; DuoRec, Qiu et al. 2022): two views of each
training window (``train/augment.py``) go through the network beside the next-item batch;
their last-position representations are pulled together and pushed from the batch's other
views by InfoNCE, added to the next-item loss times ``weight``.

Masked-item pretraining (``PretrainConfig``): the same layers first trained
bidirectionally with the Cloze objective (BERT4Rec), then fine-tuned for the next item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from shopformer.train.augment import AUGMENTATIONS, augment
from shopformer.train.batches import Windows


@dataclass(frozen=True)
class ContrastiveConfig:
    """Contrastive self-supervision; off while ``weight`` is 0 (the default).

    weight: the InfoNCE loss's factor beside the next-item loss.
    temperature: divides the similarities inside InfoNCE.
    augmentations: what each view draws from, one per row uniformly: "crop", "mask",
        "reorder" (CL4SRec) and "dropout" (the window unchanged: DuoRec's model-level
        view, different only by the network's dropout). ``("dropout",)`` alone is DuoRec's
        unsupervised objective: the next-item pass itself is one view and one more pass
        of the same windows the other (one extra pass, not two).
    crop_rate, mask_rate, reorder_rate: the share of a window kept by a crop, masked,
        and shuffled by a reorder (CL4SRec's eta, gamma, beta).
    similarity: "dot" (CL4SRec, DuoRec) or "cosine" of the representations.
    """

    weight: float = 0.0
    temperature: float = 1.0
    augmentations: tuple[str, ...] = ("crop", "mask", "reorder")
    crop_rate: float = 0.6
    mask_rate: float = 0.3
    reorder_rate: float = 0.6
    similarity: Literal["dot", "cosine"] = "dot"

    def __post_init__(self) -> None:
        object.__setattr__(self, "augmentations", tuple(self.augmentations))  # a list when read from JSON
        unknown = set(self.augmentations) - set(AUGMENTATIONS)
        if unknown or not self.augmentations:
            raise ValueError(f"contrastive.augmentations {sorted(unknown) or '()'}: choose from "
                             f"{', '.join(AUGMENTATIONS)}")
        for name in ("crop_rate", "mask_rate", "reorder_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"contrastive.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"contrastive.temperature must be > 0, got {self.temperature}")
        if self.weight < 0:
            raise ValueError(f"contrastive.weight must be >= 0, got {self.weight}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    @property
    def dropout_only(self) -> bool:
        """DuoRec's unsupervised view: the next-item pass is the first view."""
        return self.augmentations == ("dropout",)


@dataclass(frozen=True)
class PretrainConfig:
    """Masked-item (Cloze) pretraining of the causal model's layers, then next-item
    fine-tuning; off while ``epochs`` is 0.

    epochs: Cloze epochs (at ``train.cloze_prob``, no validation read: the last weights
        are kept, the fine-tuning's validation picks what is served).
    time_share: with ``train.time_limit_s``, the share of the limit pretraining may use;
        fine-tuning gets the rest, so the whole fit keeps the one budget.
    """

    epochs: int = 0
    time_share: float = 0.3

    def __post_init__(self) -> None:
        if self.epochs < 0 or not 0.0 < self.time_share < 1.0:
            raise ValueError(f"pretrain: epochs >= 0 and 0 < time_share < 1, got {self.epochs}, {self.time_share}")


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0, similarity: str = "dot") -> torch.Tensor:
    """InfoNCE over a batch of pairs (the NT-Xent form of SimCLR that CL4SRec and DuoRec
    use): z1, z2 (B, D) are two views of B sequences; each of the 2B views has its twin as
    the positive and the other 2B - 2 views as negatives. Mean over the 2B views."""
    z = torch.cat([z1, z2]).float()  # (2B, D); float32 under autocast too
    if similarity == "cosine":
        z = F.normalize(z, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"unknown similarity {similarity!r}: use dot or cosine")
    B = len(z1)
    logits = z @ z.T / temperature  # (2B, 2B)
    logits = logits.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))
    twin = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(z.device)
    return F.cross_entropy(logits, twin)


def contrastive_views(inputs: Windows, config: ContrastiveConfig, mask_token: int,
                      rng: np.random.Generator) -> list[Windows]:
    """The extra windows to encode: one (DuoRec: the unchanged inputs again) or two
    augmented views (CL4SRec)."""
    if config.dropout_only:
        return [inputs]
    rates = {"crop": config.crop_rate, "mask": config.mask_rate, "reorder": config.reorder_rate}
    return [augment(inputs, config.augmentations, rates, mask_token, rng) for _ in range(2)]


def stack(windows: list[Windows]) -> Windows:
    """Windows of one width, one under the other (one forward pass for all of them)."""
    def cat(name: str):
        parts = [getattr(w, name) for w in windows]
        return None if parts[0] is None else np.concatenate(parts)

    return Windows(cat("items"), cat("types"), cat("gaps"), cat("context"))


def view_loss(hidden: torch.Tensor, n_rows: int, config: ContrastiveConfig, d_model: int) -> torch.Tensor:
    """InfoNCE from the stacked pass's hidden states (rows: next-item inputs, then the
    views, ``n_rows`` each), read at the last position and on the first ``d_model``
    columns (the text channel's extra columns are not a representation)."""
    last = hidden[:, -1, :d_model]  # (k * n_rows, D)
    if config.dropout_only:
        z1, z2 = last[:n_rows], last[n_rows : 2 * n_rows]
    else:
        z1, z2 = last[n_rows : 2 * n_rows], last[2 * n_rows : 3 * n_rows]
    return info_nce(z1, z2, config.temperature, config.similarity)
