"""The Transformer recommenders behind the Recommender interface: ``sasrec`` (causal,
next-item) and ``bert4rec`` (bidirectional, Cloze). This wrapper owns the data windows,
the losses, the device and save/load; the tensor maths is in ``models/sasrec.py``."""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Self

import numpy as np
import torch

from shopformer.features.content import ItemContent
from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models.calibration import Calibration, CalibrationConfig, calibrate
from shopformer.models.content_knn import token_idf
from shopformer.models.ensemble import SASRecEnsemble
from shopformer.models.item_encoder import token_unit_rows
from shopformer.models.sasrec import SASRec, SASRecConfig
from shopformer.models.transfer import (TransferConfig, copy_shared_layers, load_source, model_folder,
                                        transferred_arch)
from shopformer.train import distributed, losses
from shopformer.train.batches import (LazyBatches, Windows, all_windows, bucketed_batches, build_windows,
                                      cloze_mask)
from shopformer.train.contrastive import ContrastiveConfig, PretrainConfig, contrastive_views, stack, view_loss
from shopformer.train.device import amp_dtype, precision_name
from shopformer.train.dp import DPConfig, PrivacyReport
from shopformer.train.loop import Trainer, TrainConfig, TrainHistory, plot_history, seed_everything


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture (``arch``) and optimisation (``train``); set from the command line as
    ``--set arch.d_model=128 --set train.lr=0.002``."""

    arch: SASRecConfig = SASRecConfig()
    train: TrainConfig = TrainConfig()
    score_batch: int = 512
    #: > 1: train this many networks one after the other (seeds seed, seed + 1, ...;
    #: a time limit is shared between them) and score with the mean of their scores
    members: int = 1
    #: with content: the output ID scale and text weight chosen on validation after fit
    calibration: CalibrationConfig = CalibrationConfig()
    #: DP-SGD (user-level differential privacy), off unless ``dp.epsilon`` is set
    dp: DPConfig = DPConfig()
    #: self-supervision (train/contrastive.py): a contrastive loss beside the next-item
    #: one, and masked-item pretraining before it; both off by default
    contrastive: ContrastiveConfig = ContrastiveConfig()
    pretrain: PretrainConfig = PretrainConfig()
    #: cross-domain transfer (models/transfer.py): start from another shop's run, off by default
    transfer: TransferConfig = TransferConfig()


@dataclass(frozen=True)
class BERT4RecConfig(TransformerConfig):
    """Same fields; the architecture defaults to bidirectional."""

    arch: SASRecConfig = SASRecConfig(causal=False)


#: Entries of SASRec's state dict with one row per item index (padding, items, [MASK]).
PER_ITEM_STATE = ("item_emb.weight", "known", "content.tokens", "content.vectors", "unit_vectors")


def _tensors(w: Windows, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    return tuple(None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)
                 for a in (w.items, w.types, w.gaps))


def _now() -> float:
    """Epoch seconds of the request being answered (a function, so tests can set it)."""
    return time.time()


def _context(w: Windows, device: torch.device | None = None) -> torch.Tensor | None:
    """The windows' time context as a tensor (None without ``arch.time_context``)."""
    return None if w.context is None else torch.from_numpy(np.ascontiguousarray(w.context)).to(device)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


class SASRecRecommender:
    """Causal Transformer trained for next-item prediction. With ``content`` (rows
    aligned with the item vocabulary) item embeddings fuse IDs with product content."""

    name = "sasrec"
    config_type: type[TransformerConfig] = TransformerConfig

    def __init__(self, config: TransformerConfig = TransformerConfig(), content: ItemContent | None = None):
        self.config = config
        self.content = content
        self.module: SASRec | None = None
        self._table: torch.Tensor | None = None  # inference item table, see item_representations
        self._output: tuple[torch.Tensor, torch.Tensor] | None = None  # (_table it came from, output table)
        self._bfloat16: tuple | None = None  # (_table it came from, network copy, table copy)
        self._int8: tuple | None = None  # (_table it came from, network copy)
        self.history = TrainHistory()
        self.calibration: Calibration | None = None
        self.privacy: PrivacyReport | None = None  # the guarantee, when trained with DP-SGD
        #: called with the freshly built network before training, to start it from a trained
        #: one instead of random weights (retraining: ``feedback/warmstart.py``)
        self.warm_start: Callable[[SASRec], None] | None = None
        #: called with each validation NDCG@10 during fit; it may raise to stop training
        #: (time-budgeted tuning prunes a trial that trails the others: ``tune/search.py``)
        self.on_validation: Callable[[float], None] | None = None
        #: where the last fit ran: {"device", "processes", "precision"} (recorded in the run folder)
        self.training_setup: dict | None = None
        #: the source run the last fit started from (``transfer.from_run``), recorded in the run folder
        self.transferred_from: dict | None = None

    # -- training ---------------------------------------------------------------------
    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        if self.config.dp.enabled:
            self._check_dp()
        if self.config.members > 1:
            return self._fit_members(train, n_items, valid)
        c = self.config
        seed_everything(c.train.seed)
        arch = replace(c.arch, n_items=n_items)
        if self.content is not None:
            if len(self.content.tokens) != n_items + 1:
                raise ValueError(f"content has {len(self.content.tokens)} rows; the catalog needs {n_items + 1}")
            arch = replace(arch, content_tokens=self.content.n_tokens, content_width=self.content.tokens.shape[1],
                           content_dim=self.content.vector_dim,
                           channel_tokens=arch.text_channel and self.content.vectors is None)
        source = None
        if c.transfer.enabled:  # the network's sizes and catalog-free layers come from the source run
            if self.content is None or self.content.vectors is None:
                raise ValueError("transfer.from_run: the target needs product text vectors (--text) to place its items")
            source = load_source(c.transfer.from_run)
            arch = transferred_arch(arch, source.config)
        self.config = replace(c, arch=arch)
        self.module, self._table = SASRec(arch), None
        rng = np.random.default_rng(c.train.seed)
        rows = np.flatnonzero(train.lengths >= 2)  # a row needs an input and a target
        # the rows are read where they lie (a memory-mapped log larger than memory is
        # never copied whole); counts of the items of those rows only, as the loss sees them
        single = train.offsets[:-1][train.lengths == 1]
        counts = torch.from_numpy(np.bincount(train.items, minlength=n_items + 1)
                                  - np.bincount(train.items[single], minlength=n_items + 1))
        if self.module.content is not None:
            vectors = self.content.vectors
            self.module.content.set_rows(torch.from_numpy(self.content.tokens),
                                         None if vectors is None else torch.from_numpy(vectors))
            self.module.known[: n_items + 1] = torch.from_numpy(np.bincount(train.items, minlength=n_items + 1) > 0)
            if arch.text_channel:
                self._fill_channel(self.module)
        if source is not None:
            copied = copy_shared_layers(self.module, source)
            self.transferred_from = {"run": str(model_folder(c.transfer.from_run).parent.resolve()),
                                     "source_items": source.config.n_items, "layers": copied}
        if self.warm_start is not None:
            self.warm_start(self.module)
        ssl, fine_tune, pretrained = c.contrastive, c.train, ""
        if (ssl.enabled or c.pretrain.epochs) and not arch.causal:
            raise ValueError(f"contrastive / pretrain: options of the causal model (sasrec), not {self.name}")
        if c.pretrain.epochs and not c.dp.enabled:  # Cloze epochs on the same layers, then next-item
            from shopformer.models.cloze_pretrain import cloze_pretrain

            spent, epochs = cloze_pretrain(self, train, n_items)
            pretrained = f"; after {epochs} Cloze pretraining epochs ({spent:.0f} s)"
            if c.train.time_limit_s:  # one budget for both
                fine_tune = replace(c.train, time_limit_s=max(1.0, c.train.time_limit_s - spent))
        if c.dp.enabled:
            self._fit_private(train.rows(rows), len(train))
            self.training_setup = {"device": "cpu", "processes": 1, "precision": "float32"}
            return self
        ranks = distributed.start(c.train.device)
        device, precision = ranks.device, amp_dtype(ranks.device, c.train.mixed_precision)
        self.module.to(device)
        net = distributed.wrap(self.module, ranks)  # what the forward pass goes through
        log_q = losses.popularity_log_q(counts, 0.75).to(device)
        gen = torch.Generator(device=device).manual_seed(c.train.seed)
        length = arch.max_len + 1 if arch.causal else arch.max_len

        if c.train.crop not in ("random", "last", "all"):
            raise ValueError(f"unknown crop {c.train.crop!r}: use random, last or all")
        every_window = all_windows(train.rows(rows), length) if c.train.crop == "all" else None

        source, pick = (every_window, np.arange(len(every_window))) if every_window is not None else (train, rows)
        window_lengths = np.minimum(source.lengths[pick], length)
        crop_rng = rng if c.train.crop == "random" else None

        def epoch_batches(epoch: int) -> LazyBatches:
            # windows are cut batch by batch: all of an epoch's at once is several times the
            # data's size (2M users x 51 int64 cells = 0.8 GB per array at 100M events)
            groups = bucketed_batches(window_lengths, c.train.batch_size, rng)
            return LazyBatches(groups, lambda g: self._windows(source.rows(pick[g]), length, crop_rng).trim())

        def step(batch: Windows) -> torch.Tensor:
            if arch.causal:  # position t reads events <= t and predicts event t + 1
                inputs, targets = batch.columns(slice(None, -1)), batch.items[:, 1:]
            else:
                items, targets = cloze_mask(batch.items, c.train.cloze_prob, self.module.mask_token, rng)
                hidden = items == self.module.mask_token  # a masked slot shows no type or gap
                inputs = Windows(items, *(None if a is None else np.where(hidden, 0, a)
                                          for a in (batch.types, batch.gaps)))
            # drawn on the whole batch, as the cloze mask: every rank's generator stays in step
            views = contrastive_views(inputs, ssl, self.module.mask_token, rng) if ssl.enabled else []
            weight = view_weight = 1.0
            if ranks.distributed:  # this rank's slice of the global batch (train/distributed.py)
                n_global = int((targets > 0).sum())  # the cloze mask was drawn on the whole batch
                rows = ranks.shard(len(targets))
                weight = distributed.shard_weight(int((targets[rows] > 0).sum()), n_global, ranks.world_size)
                view_weight = distributed.shard_weight(len(rows), len(targets), ranks.world_size)
                if len(rows) == 0:  # a batch shorter than the ranks: join DDP's step with no weight
                    rows = np.arange(1)
                inputs, targets = inputs.select(rows), targets[rows]
                views = [v.select(rows) for v in views]
            table = self.module.item_representations()  # (N + 2, D), one per step
            n = len(targets)
            if views:  # one pass: next-item inputs, then the views (train/contrastive.py)
                inputs = stack([inputs, *views])
            h_all = net(*_tensors(inputs, device), table=table, context=_context(inputs, device))  # (B [x k], T, D)
            h = h_all[:n] if views else h_all
            y = torch.from_numpy(targets).to(device)
            keep = y > 0
            loss = self._loss(h[keep], y[keep], self.module.item_table(table), log_q, gen)
            loss = loss if weight == 1.0 else loss * weight
            if views:
                loss = loss + ssl.weight * view_weight * view_loss(h_all, n, ssl, arch.d_model)
            return loss

        def validate() -> float:
            score = self._validate(valid, n_items)
            if self.on_validation is not None:
                self.on_validation(score)
            return score

        self.history = Trainer(fine_tune).fit(self.module, epoch_batches, step, validate if valid is not None else None,
                                              ranks=ranks, precision=precision)
        self.history.stopped += pretrained
        self.module.to("cpu")  # served and saved from the CPU
        self._table = None  # the best weights were restored
        self.training_setup = {"device": str(device), "processes": ranks.world_size,
                               "precision": precision_name(precision)}
        if c.calibration.enabled and valid is not None and self.module.content is not None:
            self.apply_calibration(calibrate(self, valid, c.calibration))
        return self

    def _check_dp(self) -> None:
        c = self.config
        for bad, why in ((not c.arch.causal, f"{self.name} (the causal model, sasrec, only)"),
                         (self.content is not None, "product content (ID-only models for now)"),
                         (c.members > 1, "members > 1 (each network would spend the budget again)"),
                         (c.arch.time_context, "arch.time_context (not in the per-user DP step yet)"),
                         (c.contrastive.enabled or c.pretrain.epochs > 0, "contrastive / pretrain (self-supervision)"),
                         (c.train.loss != "ce", f"train.loss={c.train.loss} (DP-SGD uses the full softmax, ce)"),
                         (c.train.crop == "all", "train.crop=all (a user must be one example: use random or last)"),
                         (c.train.device not in ("auto", "cpu"), f"train.device={c.train.device} (it runs on the CPU)"),
                         (distributed.ranks_from_env()[1] > 1, "several processes (torchrun)")):
            if bad:
                raise ValueError(f"dp.epsilon: DP-SGD does not support {why}")

    def _fit_private(self, seqs: Sequences, n_users: int) -> None:
        """DP-SGD (train/private.py): fixed epochs, no validation read, the last weights kept."""
        from shopformer.train.private import fit_private

        c = self.config
        length = c.arch.max_len + 1
        crop = c.train.crop == "random"
        self.history, self.privacy = fit_private(
            self.module, seqs, lambda rows, r: self._windows(rows, length, r if crop else None),
            c.train, c.dp, n_users)

    def apply_calibration(self, cal: Calibration) -> None:
        """Score with the chosen ID scale and text weight (adds the text channel to a
        network trained without it when the weight is above 0)."""
        arch = self.config.arch
        new_arch = replace(arch, id_output_scale=cal.id_scale, text_channel=arch.text_channel or cal.text_weight > 0,
                           text_history=cal.text_history, new_item_bias=cal.new_item_bias)
        if new_arch.text_channel and not arch.text_channel:
            new_arch = replace(new_arch, channel_tokens=self.content.vectors is None)
            grown = SASRec(new_arch)
            grown.load_state_dict(self.module.state_dict(), strict=False)  # all but the channel's entries
            self._fill_channel(grown)
            self.module = grown.eval()
        if self.module.text_weight is not None:
            with torch.no_grad():
                self.module.text_weight.fill_(cal.text_weight)
        self.module.config = new_arch  # item_table reads the scale from the network's own config
        self.config = replace(self.config, arch=new_arch)
        self._table, self.calibration = None, cal

    def _fill_channel(self, module: SASRec) -> None:
        """The channel's rows: unit text / image vectors, or IDF-weighted tokens."""
        if module.config.channel_tokens:
            module.set_token_channel(torch.from_numpy(token_idf(self.content.tokens, self.content.n_tokens)))
        else:
            module.set_vectors(torch.from_numpy(self.content.vectors))

    def _fit_members(self, train: Sequences, n_items: int, valid: EvalCases | None) -> Self:
        c = self.config
        t = c.train
        share = t.time_limit_s / c.members if t.time_limit_s else 0.0
        members, records, epochs = [], [], 0
        for k in range(c.members):
            # members share one architecture (it rebuilds them on load): none is calibrated
            cfg = replace(c, members=1, train=replace(t, seed=t.seed + k, time_limit_s=share),
                          calibration=replace(c.calibration, enabled=False))
            member = type(self)(cfg, self.content).fit(train, n_items, valid)
            members.append(member)
            wall = records[-1].wall_seconds if records else 0.0  # one curve: members back to back
            records += [replace(r, epoch=r.epoch + epochs, wall_seconds=r.wall_seconds + wall)
                        for r in member.history.records]
            epochs += len(member.history.records)
        self.config = replace(members[0].config, members=c.members, train=t)
        self.module, self._table = SASRecEnsemble([m.module for m in members]), None
        self.history = TrainHistory(records=records, best_epoch=epochs,
                                    stopped="; ".join(f"member {k + 1}: {m.history.stopped}" for k, m in enumerate(members)))
        if valid is not None:
            self.history.best_valid = self._validate(valid, n_items)  # the ensemble's own score
        return self

    def _windows(self, seqs: Sequences, length: int, rng=None, at: np.ndarray | None = None) -> Windows:
        arch = self.config.arch
        return build_windows(seqs, length, rng, arch.event_types, arch.time_gap_buckets,
                             arch.holidays if arch.time_context else None, at)

    @property
    def reads_time(self) -> bool:
        """True when scores depend on the moment asked for (``score(history, at)``)."""
        return self.config.arch.time_context

    def _query_times(self, n: int, at: float | np.ndarray | None) -> np.ndarray | None:
        """(n,) epoch seconds each row is asked at; None (no time context) or "now"."""
        if not self.config.arch.time_context:
            return None
        if at is None:  # serving: the request is answered now
            at = _now()
        at = np.asarray(at, dtype=np.float64)
        return np.full(n, float(at)) if at.ndim == 0 else at

    def _loss(self, h, y, table, log_q, gen) -> torch.Tensor:
        t = self.config.train
        if t.loss == "ce":
            # With content, items unseen in training stand for products added later: they
            # are left out of the softmax rather than taught to score low.
            unseen = None if self.module.content is None else ~self.module.known[: len(table)]
            return losses.full_ce(h, table, y, unseen)
        if t.loss == "sampled":
            return losses.sampled_softmax(h, table, y, t.n_negatives, log_q, gen)
        if t.loss == "gbce":
            return losses.gbce(h, table, y, t.n_negatives, t.gbce_t, gen)
        raise ValueError(f"unknown loss {t.loss!r}: use ce, sampled or gbce")

    def _validate(self, valid: EvalCases, n_items: int) -> float:
        from shopformer.evaluate.protocol import EvalConfig, evaluate

        self._table = None  # the weights moved since the last evaluation
        res = evaluate(self, valid, n_items, EvalConfig(cutoffs=(10,)), progress=False)
        return res.metrics["NDCG@10"]

    # -- inference --------------------------------------------------------------------
    @torch.no_grad()
    def item_representations(self) -> torch.Tensor:
        """(N + 2, D) item table for inference, computed once per set of weights (with
        content it is a small network, not a lookup)."""
        if self._table is None:
            module = self._require()
            module.eval()
            self._table = module.item_representations()
        return self._table

    @torch.no_grad()
    def output_table(self) -> torch.Tensor:
        """(N + 1, D [+ V]) output item table (``module.item_table``), computed once per
        inference table: with calibration or the text channel it is not a plain slice."""
        table = self.item_representations()
        if self._output is None or self._output[0] is not table:
            self._output = table, self._require().item_table(table)
        return self._output[1]

    @torch.no_grad()
    def similarity_table(self) -> torch.Tensor:
        """``output_table()`` without the new-item bias column (a score offset, not a
        likeness): what similar items compare."""
        table = self.output_table()
        return table[:, :-1] if self.config.arch.new_item_bias else table

    @torch.no_grad()
    def bfloat16_copy(self) -> tuple[SASRec, torch.Tensor]:
        """A bfloat16 copy of the network and of its inference item table, made once per
        set of weights, for work that may be approximate (occlusion): half the memory
        read per call, no casts at each call as under autocast."""
        table = self.item_representations()
        if self._bfloat16 is None or self._bfloat16[0] is not table:
            module = copy.deepcopy(self._require()).to(torch.bfloat16).eval()
            self._bfloat16 = table, module, table.to(torch.bfloat16)
        return self._bfloat16[1], self._bfloat16[2]

    @torch.no_grad()
    def int8_copy(self) -> SASRec:
        """A copy of the network whose linear layers run int8 weights (dynamic
        quantization: a quarter of the weight bytes read per call), made once per set of
        weights, for work that may be approximate (occlusion); it reads the float item
        table as is."""
        table = self.item_representations()
        from shopformer.models.quantize import is_quantized

        if is_quantized(self._require()):  # an int8 run (`shopformer quantize`) is its own int8 copy
            return self._require()
        if self._int8 is None or self._int8[0] is not table:
            # PyTorch marks this eager-mode API deprecated (torchao's is the successor); it
            # is an opt-in path whose docs say so (OcclusionConfig.precision), so its
            # warnings are not repeated in a server's log
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.ao.quantization.quantize_dynamic(copy.deepcopy(self._require()).eval(),
                                                                {torch.nn.Linear}, dtype=torch.qint8)
            self._int8 = table, module
        return self._int8[1]

    def _require(self) -> SASRec:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self.module

    def _checked(self, history: Sequences) -> Sequences:
        """History without padding entries; an index outside the catalog is an error."""
        n = self.config.arch.n_items
        if len(history.items) and (history.items.max() > n or history.items.min() < 0):
            raise ValueError(f"history has item indexes outside 1..{n}")
        return history.without_padding()

    @torch.no_grad()
    def user_vectors(self, history: Sequences, at: float | np.ndarray | None = None) -> torch.Tensor:
        """(B, D) user representation: the encoder output at the last position. ``at``:
        epoch seconds (one, or one per row) of the moment asked for, read with
        ``arch.time_context`` only; default now (a served request)."""
        module = self._require()
        if module.training:  # eval() walks every submodule: a tenth of a served request
            module.eval()
        arch = self.config.arch
        history = self._checked(history)
        if arch.causal:
            w = self._windows(history, arch.max_len, at=self._query_times(len(history), at))
        else:  # read the latest max_len - 1 events, then ask for the [MASK] after them
            w = self._windows(history, arch.max_len - 1)
            w = Windows(*(None if a is None else np.pad(a, ((0, 0), (0, 1))) for a in (w.items, w.types, w.gaps)))
            w.items[:, -1] = module.mask_token
        # Score in batches of similar length so short histories are not padded to long ones.
        order = np.argsort((w.items > 0).sum(axis=1), kind="stable")
        table = self.item_representations()
        out = torch.empty(len(w.items), self.output_table().shape[1])  # D [+ V], or the members' sum
        device = _device(module)  # a GPU while validating during training there; else the CPU
        for i in range(0, len(order), self.config.score_batch):
            rows = order[i : i + self.config.score_batch]
            batch = w.select(rows).trim()
            h = module(*_tensors(batch, device), table=table, last_only=True, context=_context(batch, device))  # (b, 1, D)
            out[torch.from_numpy(rows)] = h[:, -1].cpu()
        return out

    @torch.no_grad()
    def score(self, history: Sequences, at: float | np.ndarray | None = None) -> np.ndarray:
        table = self.output_table()  # (N + 1, D)
        scores = (self.user_vectors(history, at).to(table.device) @ table.T).cpu().numpy().astype(np.float32, copy=False)
        scores[:, 0] = -np.inf  # padding is never an answer
        return scores

    @torch.no_grad()
    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of output item embeddings."""
        from shopformer.retrieve.exact import top_k

        table = torch.nn.functional.normalize(self.similarity_table(), dim=-1)
        items = np.asarray(items, dtype=np.int64)
        if len(items) and (items.max() > self.config.arch.n_items or items.min() < 0):
            raise ValueError(f"item indexes outside 1..{self.config.arch.n_items}")
        sims = (table[torch.as_tensor(items)] @ table.T).numpy()
        sims[:, 0] = -np.inf
        sims[np.arange(len(items)), items] = -np.inf
        return top_k(sims, k)

    # -- new products -------------------------------------------------------------------
    def with_new_items(self, tokens: np.ndarray, vectors: np.ndarray | None = None) -> Self:
        """A copy of this model that also knows ``len(tokens)`` new products (indexes
        n_items + 1 ...), placed by their content alone: no retraining. ``tokens`` and
        ``vectors`` come from ``self.content.rows_for(products)``. The original model is
        left untouched (it may be serving)."""
        module = self._require()
        if isinstance(module, SASRecEnsemble):
            raise ValueError("an ensemble (members > 1) cannot place new products; train with members=1")
        if module.content is None or self.content is None:
            raise ValueError("only a model trained with product content can place new products")
        n_old, n_add = self.config.arch.n_items, len(tokens)
        arch = replace(self.config.arch, n_items=n_old + n_add)
        grown = SASRec(arch)
        state = grown.state_dict()
        new_rows = {"content.tokens": torch.as_tensor(tokens, dtype=torch.long)}
        if vectors is not None:
            new_rows["content.vectors"] = torch.as_tensor(vectors, dtype=torch.float32)
            new_rows["unit_vectors"] = torch.nn.functional.normalize(new_rows["content.vectors"], dim=-1)
        with torch.no_grad():
            for key, old in module.state_dict().items():
                if key not in PER_ITEM_STATE:
                    state[key] = old
                    continue
                grow = state[key]
                grow.zero_()  # new rows: no ID embedding, not known, no content unless given
                grow[: n_old + 1] = old[: n_old + 1]
                grow[-1] = old[-1]  # the [MASK] row moves to the end
                if key in new_rows:
                    grow[n_old + 1 : n_old + 1 + n_add] = new_rows[key]
        grown.load_state_dict(state)
        if arch.text_channel and arch.channel_tokens:  # the new rows' tokens, weighted by the kept IDF
            with torch.no_grad():
                new = slice(n_old + 1, n_old + 1 + n_add)
                grown.unit_vectors[new] = token_unit_rows(grown.content.tokens[new], grown.token_idf)
        c = self.content
        content = ItemContent(
            np.vstack([c.tokens, tokens]), c.token_names,
            None if c.vectors is None else np.vstack([c.vectors, np.zeros((n_add, c.vector_dim), np.float32)
                                                      if vectors is None else vectors]),
            c.price_edges, c.config,
        )
        model = type(self)(replace(self.config, arch=arch), content)
        model.module, model.history = grown.eval(), self.history
        return model

    # -- persistence ------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        (folder / "config.json").write_text(json.dumps({"model": self.name, **asdict(self.config)}, indent=2))
        torch.save(self._require().state_dict(), folder / "weights.pt")
        if self.content is not None:  # token names and price bands, to place new products
            self.content.save(folder)
        hist = {
            "best_epoch": self.history.best_epoch,
            "best_valid": self.history.best_valid,
            "stopped": self.history.stopped,
            "records": [asdict(r) for r in self.history.records],
            "calibration": None if self.calibration is None else asdict(self.calibration),
            "privacy": None if self.privacy is None else self.privacy.to_dict(),
        }
        if self.privacy is not None:  # the training loss is a statistic of the raw data: kept out of the folder
            hist["records"] = [{**r, "loss": None} for r in hist["records"]]
        (folder / "training.json").write_text(json.dumps(hist, indent=2))
        if self.history.records and self.privacy is None:
            plot_history(self.history, folder / "training.png", f"{self.name} training")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        raw = json.loads((folder / "config.json").read_text())
        raw.pop("model", None)
        config = cls.config_type(
            arch=SASRecConfig(**raw["arch"]), train=TrainConfig(**raw["train"]), score_batch=raw["score_batch"],
            members=raw.get("members", 1),
            calibration=CalibrationConfig(**{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in raw.get("calibration", {}).items()}),
            dp=DPConfig(**raw.get("dp", {})),
            contrastive=ContrastiveConfig(**raw.get("contrastive", {})),
            pretrain=PretrainConfig(**raw.get("pretrain", {})),
            transfer=TransferConfig(**raw.get("transfer", {})),
        )
        content = ItemContent.load(folder) if (folder / "content.json").exists() else None
        model = cls(config, content)
        model.module = SASRec(config.arch) if config.members == 1 else SASRecEnsemble(
            [SASRec(config.arch) for _ in range(config.members)])
        if (folder / "quantization.json").exists():  # int8 layers (models/quantize.py): converted before loading
            from shopformer.models.quantize import read_record, requantize

            requantize(model.module, read_record(folder))
        state = torch.load(folder / "weights.pt", weights_only=True, map_location="cpu")
        if config.members == 1:
            state.setdefault("known", model.module.known)  # saved before content fusion: all known
        model.module.load_state_dict(state)
        model.module.eval()
        training = folder / "training.json"
        privacy = json.loads(training.read_text()).get("privacy") if training.exists() else None
        model.privacy = None if privacy is None else PrivacyReport(**privacy)
        return model


class BERT4RecRecommender(SASRecRecommender):
    """The same layers, bidirectional, trained with the Cloze (masked item) objective."""

    name = "bert4rec"
    config_type = BERT4RecConfig

    def __init__(self, config: BERT4RecConfig = BERT4RecConfig(), content: ItemContent | None = None):
        super().__init__(config, content)
