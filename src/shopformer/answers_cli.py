"""``shopformer answer --item ID "question"``: the best of a product's past answers for a
customer's question and, for a yes/no question, yes or no with a confidence (the same
Answerer as ``POST /v1/answers``, :mod:`shopformer.answers`); ``shopformer answer build
--qa FILE --out DIR`` makes the folder both read (Q&A, vectors, index, fitted models)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

console = Console(stderr=True)
ENV_DIR = "SHOPFORMER_ANSWERS_DIR"


class _AskByDefault(TyperGroup):
    """``shopformer answer ...`` is ``shopformer answer ask ...`` unless it names a
    subcommand (``build``), so asking needs no extra word."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:  # noqa: ANN001 - click.Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["ask", *args]
        return super().parse_args(ctx, args)


answer_app = typer.Typer(cls=_AskByDefault, no_args_is_help=True,
                         help="Answer customers' questions about a product from its past Q&A (ask, build).")


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


@answer_app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    item: Annotated[str, typer.Option("--item", help="The product's id (its asin in Amazon's Q&A).")],
    folder: Annotated[Optional[Path], typer.Option("--dir", help=f"Answers folder from `shopformer answer build` "
                                                   f"(default: ${ENV_DIR}).")] = None,
    k: Annotated[int, typer.Option(min=1, max=100, help="Answers to show.")] = 5,
    json_: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """The k best of ITEM's stored answers for QUESTION, and yes/no with a confidence when
    it is a yes/no question."""
    from shopformer.answers import Answerer, UnknownProduct

    folder = folder or (Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR, "").strip() else None)
    if folder is None:
        _fail(f"no answers folder: pass --dir or set {ENV_DIR} (build one with `shopformer answer build`)")
    if not question.strip():
        _fail("the question is empty")
    try:
        answerer = Answerer.load(folder)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    try:
        found = answerer.answer(item, question, k)
    except UnknownProduct:
        _fail(f"no Q&A stored for item {item!r} in {folder}")
    if json_:
        print(json.dumps(asdict(found), indent=2))
        return
    out = Console()
    if found.yes_no is not None:
        unsure = ", not sure" if found.yes_no.abstain else ""
        out.print(f"[bold]{found.yes_no.answer.upper()}[/] (confidence {found.yes_no.confidence:.2f}{unsure})")
    table = Table("rank", "score", "answer", "to the question", show_lines=False)
    for r, a in enumerate(found.answers, start=1):
        table.add_row(str(r), f"{a.score:.3f}", a.answer, a.question)
    out.print(table)


@answer_app.command("build")
def build(
    qa: Annotated[Path, typer.Option("--qa", help="Q&A file: Amazon's JSON lines (or Python-literal lines), "
                                     "gzip or not, with asin, question, answer, questionType, answerType.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (replaced files inside).")],
    valid_frac: Annotated[float, typer.Option(min=0.01, max=0.5, help="Latest share of questions held out "
                                              "to choose the fusion and the re-ranker's size on.")] = 0.15,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Read only the first N records.")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="Text-vector cache folder (re-builds encode only new "
                                                  "texts).")] = None,
) -> None:
    """Index a Q&A file and fit the answer models: every Q&A is served; models are fitted on
    all but the latest --valid-frac questions and chosen on those."""
    from shopformer.answers import Answerer, AnswererConfig, QAFormatError, SplitConfig, load_qa, temporal_split
    from shopformer.features.text import TextEncoder, TextEncoderConfig

    try:
        frame, dropped = load_qa(qa, limit=limit)
    except (FileNotFoundError, QAFormatError) as exc:
        _fail(str(exc))
    if frame.height < 2:
        _fail(f"{qa} holds {frame.height} usable Q&A; at least 2 are needed")
    for reason, n in dropped.items():
        console.print(f"[yellow]dropped[/] {n} records: {reason}")
    config = AnswererConfig()
    split = temporal_split(frame, SplitConfig(valid_frac=valid_frac, test_frac=0.0))
    encoder = TextEncoder(TextEncoderConfig(model=config.encoder, cache_dir=cache))
    answerer = Answerer.fit(config, frame, split, encoder, progress=True)
    answerer.save(out)
    r = answerer.report
    console.print(f"[green]built[/] {out}: {frame.height} Q&A on {len(answerer.sets.by_item)} products; "
                  f"fusion {r.get('fusion')}; re-ranker {'yes' if answerer.booster is not None else 'no'}; "
                  f"yes/no model {'yes' if answerer.yesno is not None and answerer.yesno.answers else 'no'}")
