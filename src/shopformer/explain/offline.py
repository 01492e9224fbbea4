"""Explanations for a trained run folder, outside the server: what ``shopformer explain
USER --run RUN`` prints.

The user's history is their full sequence in the run's data (what a next-item
recommendation reads); co-occurrence counts come from the same data; content from the
model's own item content when it was trained with some, else from the catalog's
brand / categories / tags / price bands; titles from the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shopformer.explain.evidence import CoCounts
from shopformer.explain.explainer import ExplainConfig, Explainer, Explanation, titles_from
from shopformer.explain.rules import EXCLUDED_HISTORY, history_mask
from shopformer.explain.sentence import label


@dataclass
class UserExplanation:
    user_id: str
    run: Path
    explanation: Explanation
    titles: dict[str, str | None]

    def event_labels(self) -> list[str]:
        """One label per occluded event, "<position>: <title or id>"."""
        ids = self.explanation.history_ids
        return [f"{p}: {label(ids[p], self.titles.get(ids[p]))}" for p in self.explanation.attribution.positions.tolist()]

    def item_labels(self) -> list[str]:
        return [label(x.item_id, self.titles.get(x.item_id)) for x in self.explanation.items]

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "run": str(self.run),
            "history": self.explanation.history_ids,
            "items": [x.to_dict() for x in self.explanation.items],
        }


def explain_user(
    run_folder: Path,
    user_id: str,
    k: int = 10,
    exclude_history: bool = True,
    data_dir: Path | None = None,
    config: ExplainConfig = ExplainConfig(),
) -> UserExplanation:
    """Top-``k`` for ``user_id`` from the run, each item with its reasons."""
    from shopformer.artifact import load_run
    from shopformer.dataset import load_products
    from shopformer.experiment import reload_data
    from shopformer.features.content import ContentConfig, build_content
    from shopformer.models.base import recommend

    run = load_run(run_folder)
    data, _ = reload_data(run, data_dir)
    if user_id not in data.users:
        raise ValueError(f"unknown user {user_id!r}: not in the data run {run_folder} was trained on")
    history = data.sequences.rows(np.array([data.users.index(user_id) - 1]))
    products = load_products(Path(data_dir or run.info["data_dir"]))
    content = getattr(run.model, "content", None)
    if content is None and products.height:
        content = build_content(products, run.items, ContentConfig())
    titles = titles_from(products, run.items)
    explainer = Explainer(config, run.model, run.items, CoCounts.from_sequences(data.sequences, data.n_items), content, titles)

    scores = np.asarray(run.model.score(history), dtype=np.float32)
    idx, top = recommend(run.model, history, k, exclude_history)
    items = idx[0][np.isfinite(top[0])]
    removed = {EXCLUDED_HISTORY: history_mask(history.items, data.n_items)} if exclude_history else {}
    explanation = explainer.explain(history, items, scores[0], removed)
    every = np.concatenate([history.items, items])
    return UserExplanation(user_id, Path(run_folder), explanation, dict(zip(run.items.decode(every), titles(every))))


def rich_table(ue: UserExplanation):  # noqa: ANN201 - a rich Table
    """The explanation as a Rich table: one row per item; its sentence, then the
    reasons it was built from (events with their shares, co-customers, shared
    attributes, where the model ranked it and which rules moved it)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Why these items for {ue.user_id} (history: {len(ue.explanation.history_ids)} events)",
                  show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    table.add_column("why", overflow="fold")
    for rank, x in enumerate(ue.explanation.items, 1):
        lines = []
        if x.events:
            lines.append("events: " + ", ".join(f"{label(e.item_id, e.title)} {e.share:.0%}" for e in x.events))
        if x.collaborative:
            lines.append("customers: " + ", ".join(f"{c.customers:,} with {label(c.item_id, c.title)}"
                                                   for c in x.collaborative))
        if x.content is not None and x.content.shared:
            lines.append("shares: " + ", ".join(f"{s.field}={s.value}" for s in x.content.shared[:3]))
        if x.content is not None and x.content.text_similarity is not None:
            lines.append(f"text: {x.content.text_similarity:.2f} like {x.content.similar_item_id}")
        if x.rules is not None:
            moved = "".join(f"; {r.rule}: {r.removed_above} removed above" for r in x.rules.rules)
            lines.append(f"model rank {x.rules.model_rank}{moved}")
        why = Text(x.sentence, style="bold")
        if lines:
            why.append("\n" + "\n".join(lines), style="dim")
        table.add_row(str(rank), label(x.item_id, ue.titles.get(x.item_id)), f"{x.score:.4g}", why)
    return table
