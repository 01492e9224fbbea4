"""Attribution heatmap for one user: history events (rows, oldest at the top) x
recommended items (columns), colour = occlusion attribution (red raised the item's
score, blue lowered it), each cell labelled with the event's share when the grid is
small enough to read. Drawn on a plain Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shopformer.explain.attribution import Attribution

#: cells above which shares are not written into the heatmap
MAX_ANNOTATED_CELLS = 400


def plot_attribution(
    attribution: Attribution,
    path: str | Path,
    event_labels: Sequence[str],
    item_labels: Sequence[str],
    title: str = "occlusion attribution",
) -> Path:
    """Save the heatmap as a PNG at ``path``. ``event_labels`` label the occluded events
    (one per ``attribution.positions``), ``item_labels`` the items."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    values = np.nan_to_num(np.asarray(attribution.values, dtype=np.float64))
    n_events, n_items = values.shape
    if len(event_labels) != n_events or len(item_labels) != n_items:
        raise ValueError(f"need {n_events} event labels and {n_items} item labels, "
                         f"got {len(event_labels)} and {len(item_labels)}")
    fig = Figure(figsize=(max(5.0, 1.0 + 0.8 * n_items), max(3.0, 1.2 + 0.35 * n_events)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if values.size:
        limit = float(np.abs(values).max()) or 1.0
        image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
        fig.colorbar(image, ax=ax, label="score drop without the event")
        if values.size <= MAX_ANNOTATED_CELLS:
            shares = attribution.shares()
            for e in range(n_events):
                for j in range(n_items):
                    if shares[e, j] >= 0.005:
                        dark = abs(values[e, j]) > 0.6 * limit  # white on the deep colours
                        ax.text(j, e, f"{shares[e, j]:.0%}", ha="center", va="center", fontsize=7,
                                color="white" if dark else "black")
    ax.set_xticks(range(n_items), [str(x) for x in item_labels], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_events), [str(x) for x in event_labels], fontsize=8)
    ax.set_xlabel("recommended items (best first)")
    ax.set_ylabel("history events (oldest first)")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
