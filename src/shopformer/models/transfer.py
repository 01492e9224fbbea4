"""Cross-domain transfer: start a text-based sequence model on one shop (the target)
from a network trained on another shop's sequences (the source), as in UniSRec.

Items of two shops have nothing in common but their text. With ``arch.item_ids=false``
(and ``arch.text_adapter``) an item is its frozen sentence vector through a small learned
adaptor, so every parameter of the network is catalog-free: the adaptor, positions,
event types, time gaps, the Transformer blocks and the final norm. Those are copied from
the source run; what belongs to one catalog is not (ID embeddings, the content buffers,
token embeddings of the source's catalog fields). The target then trains as usual
(``SASRecRecommender.fit``: the same trainer, validation and early stopping), with or
without per-item ID embeddings added (``arch.item_ids``, fresh for the target's items).

The network's sizes are the source's (``TRANSFERRED_SIZES``); the target keeps its own
dropout, ID setting and training settings. Both catalogs must be encoded by the same
text model: vectors of another width are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from shopformer.models.sasrec import SASRec, SASRecConfig


@dataclass(frozen=True)
class TransferConfig:
    """from_run: a trained run folder (or its ``model/`` folder) of ``sasrec`` or
    ``bert4rec`` with product text vectors; empty = no transfer (train from scratch)."""

    from_run: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.from_run)


#: Architecture fields taken from the source: they fix the shapes of the copied layers.
TRANSFERRED_SIZES = ("d_model", "n_layers", "n_heads", "max_len", "pre_norm", "event_types", "time_gap_buckets",
                     "time_context", "holidays", "text_adapter")
#: State entries that belong to the source's catalog, never copied.
CATALOG_STATE = ("item_emb.weight", "known", "content.tokens", "content.vectors", "unit_vectors", "token_idf",
                 "content.token_emb.weight")


def model_folder(run: str | Path) -> Path:
    """The folder holding the source network's config.json and weights.pt."""
    folder = Path(run)
    if (folder / "model" / "weights.pt").exists():
        return folder / "model"
    if (folder / "weights.pt").exists():
        return folder
    why = "does not exist" if not folder.exists() else "is not a trained run of sasrec or bert4rec (no model/weights.pt)"
    raise FileNotFoundError(f"transfer.from_run: {folder} {why}")


def load_source(run: str | Path) -> SASRec:
    """The source run's network, checked to be one that can be transferred."""
    folder = model_folder(run)
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model") not in ("sasrec", "bert4rec") or raw.get("members", 1) != 1:
        raise ValueError(f"transfer.from_run: {folder.parent} holds {raw.get('model')!r} with "
                         f"{raw.get('members', 1)} member(s); transfer needs one sasrec or bert4rec network")
    arch = SASRecConfig(**raw["arch"])
    if not arch.content_dim:
        raise ValueError(f"transfer.from_run: {folder.parent} was trained without product text vectors (--text): "
                         "its items share nothing with another catalog")
    net = SASRec(arch)
    state = torch.load(folder / "weights.pt", weights_only=True, map_location="cpu")
    net.load_state_dict(state)
    return net.eval()


def transferred_arch(target: SASRecConfig, source: SASRecConfig) -> SASRecConfig:
    """``target`` (catalog sizes set from its content) with the source's network sizes."""
    if target.content_dim != source.content_dim:
        raise ValueError(f"transfer.from_run: the target's product vectors are {target.content_dim} wide, the "
                         f"source run's {source.content_dim}: encode both catalogs with the same text model (--text)")
    return replace(target, **{name: getattr(source, name) for name in TRANSFERRED_SIZES})


def copy_shared_layers(target: SASRec, source: SASRec) -> list[str]:
    """Copy every catalog-free entry of ``source`` into ``target`` (built with
    ``transferred_arch``); returns the names copied."""
    mine = target.state_dict()
    copied = []
    with torch.no_grad():
        for name, value in source.state_dict().items():
            if name in CATALOG_STATE or name not in mine:
                continue
            if mine[name].shape != value.shape:
                raise ValueError(f"transfer.from_run: {name} is {tuple(value.shape)} in the source and "
                                 f"{tuple(mine[name].shape)} in the target")
            mine[name].copy_(value)
            copied.append(name)
    return copied
