"""``shopformer repeats --run RUN``: learn whether and which past items to recommend
again (:mod:`shopformer.models.repeat`), on the run's validation split only, and keep
the result in ``RUN/repeats`` when it beats leaving the history out. Served answers and
``shopformer evaluate`` then let past items back in by default (a request's
``exclude_history=true`` still leaves them out)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

console = Console()

#: models trained with a softmax over the catalog: their scores are logits already
SOFTMAX_MODELS = ("sasrec", "bert4rec")


def repeats(
    run: Annotated[Path, typer.Option(help="A trained run folder.")],
    data: Annotated[Optional[Path], typer.Option(help="The data folder it was trained on (default: the run's).")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the repeat settings even when validation does not improve.")] = False,
    remove: Annotated[bool, typer.Option(help="Remove the run's repeat settings and stop.")] = False,
) -> None:
    """Choose the repeat-purchase settings on validation (a grid of priors, count and
    recency weights, and a temperature for models not trained with a softmax), compare
    validation NDCG@10 with the history left out, and save them in RUN/repeats if better."""
    from shopformer.artifact import REPEATS, load_run
    from shopformer.evaluate.repeats import choose_repeat_config, ndcg10, repeat_share
    from shopformer.experiment import reload_data
    from shopformer.models.repeat import RepeatAware
    from shopformer.retrieve.exact import mask_items

    folder = run / REPEATS
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        console.print(f"removed {folder}: answers leave the history out again (reload the servers)")
        return
    try:
        loaded = load_run(run)
        d, s = reload_data(loaded, data)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    model_name = loaded.info["model"]
    with console.status("choosing repeat settings on validation"):
        config, stats, with_repeats, tried = choose_repeat_config(
            loaded.model, s.train, s.valid, d.n_items, softmax_model=model_name in SOFTMAX_MODELS)
        scores = np.array(loaded.model.score(s.valid.history), dtype=np.float32)
        without = ndcg10(mask_items(scores, s.valid.history), s.valid.targets)
    share = repeat_share(s.valid)
    table = Table(title=f"{run}: validation ({len(s.valid.targets)} cases, {share:.1%} repeats)")
    for col in ("answers", "NDCG@10"):
        table.add_column(col)
    table.add_row("history left out", f"{without:.4f}")
    table.add_row("repeat-aware", f"{with_repeats:.4f}")
    console.print(table)
    better = with_repeats > without
    if better or keep:
        extra = {"valid_ndcg10": {"excluded": round(without, 6), "repeat_aware": round(with_repeats, 6)},
                 "valid_repeat_share": round(share, 6), "grid_points": len(tried), "model": model_name}
        RepeatAware(config, loaded.model, stats).save(folder, extra)
        console.print(f"saved {folder} ({'better' if better else 'kept with --keep'}): "
                      "answers let past items back in by default (reload the servers)")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        console.print("not saved: on this data, recommending past items again does not help on validation")
