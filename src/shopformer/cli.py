"""The `shopformer` command: ingest | train | evaluate | recommend | explain | search | serve | forget | export-user |
keys | audit | retrain | versions | rollback | demo."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from shopformer.dataset import DataConfig

app = typer.Typer(
    help="shopformer: e-commerce personalization engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

DATA_DIR = Path(os.environ.get("SHOPFORMER_DATA", "shopformer-data"))

DataOpt = Annotated[Path, typer.Option("--data", help="Data folder written by `ingest`.")]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Model setting KEY=VALUE (repeatable).")
]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise typer.BadParameter(f"{what} must look like KEY=VALUE, got {v!r}")
        key, _, val = v.partition("=")
        out[key.strip()] = val.strip()
    return out


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


FixedDefaultsOpt = Annotated[bool, typer.Option(
    "--fixed-defaults", help="sasrec: the config's fixed defaults (d_model 64, batch 128, 200 epochs, dropout "
                             "0.2) for the settings not given, instead of sizing them from the data.")]


def _to_size(model: str, given: dict[str, str], fixed_defaults: bool) -> dict[str, str] | None:
    """What ``train`` and ``evaluate --model`` size ``model``'s other settings around
    (experiment.size_defaults): the settings the user gave, or None to keep the config's
    fixed defaults (``--fixed-defaults``, or a model that is not sized)."""
    from shopformer.tune.defaults import SIZED_MODELS

    return None if fixed_defaults or model not in SIZED_MODELS else given


def _print_sized(defaults: dict | None) -> None:
    """The settings sized from the data, so a user can pin or change them with --set."""
    sized = (defaults or {}).get("settings", {})
    if sized:
        console.print("sized from the data (docs/training-defaults.md): " + " ".join(
            f"{k}={v['value']}" for k, v in sized.items() if v["source"] != "user"), soft_wrap=True)


def _store_user(store, user: str) -> str:  # noqa: ANN001 - an EventStore
    """USER as ``store`` knows it: its pseudonym when SHOPFORMER_PSEUDONYM_KEY is set, the
    id as given when not; a store written with another key, or with none, is refused
    (PseudonymMismatch, a StoreError), as a mistyped key would find nobody."""
    from shopformer.privacy.pseudonym import from_env
    from shopformer.store import pseudonyms as bound

    p = from_env()
    bound.bind(store, p.fingerprint if p else None, p.is_pseudonym if p else None, claim=False)
    return p.user(user) if p is not None else user


def _run_user(user: str, run: Path, data: Path | None) -> str:
    """USER as the run's data folder knows it: mapped with SHOPFORMER_PSEUDONYM_KEY when
    the folder's ids are pseudonyms (its ``pseudonyms.json``), as given when they are raw."""
    import json

    from shopformer.ingest.api import folder_pseudonym_key
    from shopformer.privacy.pseudonym import ENV_VAR, from_env

    if data is None:
        try:
            data = Path(json.loads((run / "run.json").read_text())["data_dir"])
        except (OSError, ValueError, KeyError):
            return user  # the command itself says what is wrong with the run
    key = folder_pseudonym_key(data)
    if key is None:
        return user
    p = from_env()
    if p is None or p.fingerprint != key:
        raise ValueError(f"{data} holds pseudonymous customer ids (key fingerprint {key}): set {ENV_VAR} to the key "
                         "it was ingested with to name a customer by their raw id")
    return p.user(user)


def _data_config(
    types: str | None, min_user: int, min_item: int, dedupe: bool, protocol: str
) -> DataConfig:
    return DataConfig(
        event_types=tuple(t.strip() for t in types.split(",")) if types else None,
        min_user_events=min_user,
        min_item_events=min_item,
        dedupe_consecutive=dedupe,
        protocol=protocol,  # type: ignore[arg-type]
    )


TypesOpt = Annotated[
    Optional[str], typer.Option("--types", help="Event types to use, comma separated.")
]
MinUserOpt = Annotated[int, typer.Option("--min-user", help="k-core: min events per user.")]
MinItemOpt = Annotated[int, typer.Option("--min-item", help="k-core: min events per item.")]
DedupeOpt = Annotated[bool, typer.Option("--dedupe", help="Collapse repeats of an item in a row.")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="leave_one_out or temporal.")]


@app.command()
def ingest(
    source: Annotated[Path, typer.Argument(help="Events file (CSV/TSV/JSONL/Parquet or a public format).")],
    data: DataOpt = DATA_DIR,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Input format; guessed from the extension if omitted.")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="Product catalog file.")] = None,
    catalog_format: Annotated[Optional[str], typer.Option(help="Catalog format.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FIELD=COLUMN (repeatable).")] = None,
    event_type: Annotated[Optional[str], typer.Option(help="Event type for files without one.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row.")] = False,
    pseudonymize: Annotated[bool, typer.Option(
        "--pseudonymize", help="Store user and session ids as keyed pseudonyms (HMAC, key in "
                               "SHOPFORMER_PSEUDONYM_KEY): no raw customer id reaches the data folder.")] = False,
    stream: Annotated[Optional[bool], typer.Option(
        "--stream/--no-stream", help="Stream a CSV/TSV/Parquet event log larger than memory into a new folder "
                                     "(default: from 1 GiB; no duplicate check; see ingest/streaming.py).")] = None,
) -> None:
    """Read events (and a catalog) into a data folder, with a per-reason rejection report."""
    from shopformer.ingest import IngestError, ingest as run_ingest
    from shopformer.ingest.streaming import should_stream, stream_events_to_folder
    from shopformer.privacy.pseudonym import from_env

    try:
        if stream or (stream is None and not (catalog or pseudonymize) and should_stream(source, fmt)):
            if catalog or pseudonymize:
                _fail("--stream ingests events alone: ingest the catalog in a second call, without --pseudonymize")
            report = stream_events_to_folder(data, source, fmt, _pairs(map_, "--map") or None,
                                             event_type=event_type, strict=strict)
            console.print(report.rich_table())
            console.print(f"streamed (bounded memory, no duplicate check); report saved to {data / 'ingest_report.md'}")
            return
        report = run_ingest(
            source,
            fmt=fmt,
            data_dir=data,
            mapping=_pairs(map_, "--map") or None,
            catalog=catalog,
            catalog_format=catalog_format,
            event_type=event_type,
            strict=strict,
            pseudonyms=from_env(required=True) if pseudonymize else None,
        )
    except (IngestError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    console.print(report.rich_table())
    if report.catalog is not None:
        console.print(report.catalog.rich_table())
    if report.pseudonym_key:
        console.print(f"customer ids stored as pseudonyms (key fingerprint {report.pseudonym_key})")
    console.print(f"report saved to {data / 'ingest_report.md'}")


@app.command()
def train(
    data: DataOpt = DATA_DIR,
    model: Annotated[str, typer.Option(help="popular | itemknn | ease | sasrec | bert4rec | content_knn | auto")] = "ease",
    set_: SetOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder to write.")] = None,
    types: TypesOpt = None,
    min_user: MinUserOpt = 1,
    min_item: MinItemOpt = 1,
    dedupe: DedupeOpt = False,
    protocol: ProtocolOpt = "leave_one_out",
    full: Annotated[bool, typer.Option(help="Fit on all data (for serving; cannot be evaluated).")] = False,
    content: Annotated[Optional[str], typer.Option(
        help="Fuse product content: catalog fields that become tokens, e.g. brand,categories,tags "
             "(price bands are added when prices exist).")] = None,
    text: Annotated[bool, typer.Option(help="Fuse product text embeddings (needs shopformer[text]).")] = False,
    vectors: Annotated[Optional[Path], typer.Option(
        help="Fuse precomputed product vectors, e.g. image features: .npz (arrays item_id, vectors) "
             "or .parquet (columns item_id, vector).")] = None,
    auto: Annotated[bool, typer.Option(
        help="Search models and settings on validation within --minutes (the same as --model auto) and save "
             "the best as the run, with its search history (search.md, search.png).")] = False,
    minutes: Annotated[float, typer.Option(min=0.5, help="--auto: the search's wall-time budget.")] = 10.0,
    seed: Annotated[int, typer.Option(help="--auto: seed of the search and its trials.")] = 0,
    ensemble: Annotated[Optional[list[int]], typer.Option(
        min=2, help="--auto: then train the best Transformer setting as an ensemble of this many networks "
                    "(repeatable), kept when better on validation; the search leaves it 40% of --minutes. "
                    "An ensemble run cannot place new products by their text.")] = None,
    device: Annotated[str, typer.Option(
        help="sasrec/bert4rec: cpu | cuda | cuda:N | auto (CUDA when available), with mixed precision on CUDA; "
             "run under `torchrun --nproc-per-node N -m shopformer train ...` for several processes.")] = "auto",
    stream: Annotated[Optional[bool], typer.Option(
        "--stream/--no-stream", help="Prepare the data in bounded memory, as memory-mapped arrays (default: when "
                                     "the folder was written by `ingest --stream` or its events are >= 1 GiB).")] = None,
    pretrained: Annotated[Optional[Path], typer.Option(
        help="sasrec/bert4rec with --text: start from this run of another shop (cross-domain transfer, "
             "models/transfer.py; the same as --set transfer.from_run=RUN).")] = None,
    fixed_defaults: FixedDefaultsOpt = False,
) -> None:
    """Fit a model on the training split and save it as a run folder. For sasrec, every
    setting not given with --set is sized from the training data (the setting `--auto`
    starts from; run.json's `defaults` says which): see docs/training-defaults.md."""
    from shopformer.artifact import make_model
    from shopformer.experiment import train_run
    from shopformer.features.content import ContentConfig

    if ensemble and not (auto or model == "auto"):
        _fail("--ensemble belongs to --auto (for a plain run: --set members=N)")
    if auto or model == "auto":
        from shopformer.train.distributed import ranks_from_env

        if ranks_from_env()[1] > 1:
            _fail("--auto runs its search in one process: start it without torchrun")
        if full or content or text or vectors or set_ or device != "auto" or pretrained or fixed_defaults:
            _fail("--auto searches on the training split with validation: it takes no --full, --content (it searches "
                  "fusing the catalog's attributes itself), --text, --vectors, --set, --device or --fixed-defaults (yet)")
        from shopformer.tune import AutoConfig
        from shopformer.tune.run import train_auto

        try:
            cfg = _data_config(types, min_user, min_item, dedupe, protocol)
            search = AutoConfig(minutes=minutes, seed=seed, ensemble_sizes=tuple(ensemble or ()))
            run = train_auto(data, cfg, out or Path("runs") / "auto", search, console)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            _fail(str(exc))
            return
        a = run.info["auto"]
        console.print(f"best of {a['trials']} trials in {a['seconds'] / 60:.1f} min: [bold]{run.info['model']}[/] "
                      f"(validation NDCG@10 {a['winner']['valid_ndcg']:.4f}) -> {run.folder} "
                      f"(history: {run.folder / 'search.md'})")
        return
    from shopformer.artifact import MODELS, config_class
    from shopformer.train import distributed

    if device != "auto" and model in MODELS and not hasattr(config_class(MODELS[model])(), "train"):
        _fail(f"--device: {model} fits on the CPU; only the sequence models (sasrec, bert4rec) train on a device")
        return
    try:
        given = {**({"train.device": device} if device != "auto" else {}), **_pairs(set_, "--set"),
                 **({"transfer.from_run": str(pretrained)} if pretrained else {})}
        m = make_model(model, given)
        cfg = _data_config(types, min_user, min_item, dedupe, protocol)
        content_cfg = ContentConfig(fields=tuple(f.strip() for f in content.split(",") if f.strip())) if content else None
        run = train_run(m, data, cfg, out or Path("runs") / model, "all" if full else "train", content_cfg, text,
                        vectors, stream=stream, sized=_to_size(model, given, fixed_defaults))
    except (ValueError, FileNotFoundError) as exc:
        distributed.stop()
        _fail(str(exc))
        return
    distributed.stop(together=True)
    if run is None:  # another rank of a torchrun: rank 0 wrote the run folder and reports
        rank, _, local = distributed.ranks_from_env()
        if local == 0:  # the first process of another host (none on one host): the run is not on this one
            console.print(f"rank {rank} done: rank 0 wrote the run folder {out or Path('runs') / model} on its host "
                          f"({os.environ.get('MASTER_ADDR', '?')}), not on this one")
        return
    console.print(
        f"trained [bold]{model}[/] on {run.info['dataset']} in {run.info['fit_seconds']} s "
        f"-> {run.folder}"
    )
    _print_sized(run.info.get("defaults"))
    if "privacy" in run.info:  # DP-SGD: the guarantee the weights have (train/dp.py)
        p = run.info["privacy"]
        console.print(f"differential privacy: epsilon {p['epsilon']:.3f} (delta {p['delta']:.3g}) per user, "
                      f"{p['steps']} steps, noise multiplier {p['noise_multiplier']:.3f}")


@app.command()
def evaluate(
    run: Annotated[Optional[Path], typer.Option(help="A trained run folder.")] = None,
    data: DataOpt = DATA_DIR,
    model: Annotated[Optional[str], typer.Option(help="Fit this model and evaluate it (instead of --run).")] = None,
    set_: SetOpt = None,
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    k: Annotated[str, typer.Option("--k", help="Cutoffs, comma separated.")] = "5,10,20",
    include_history: Annotated[bool, typer.Option(help="Rank items already in the history too.")] = False,
    types: TypesOpt = None,
    min_user: MinUserOpt = 1,
    min_item: MinItemOpt = 1,
    dedupe: DedupeOpt = False,
    protocol: ProtocolOpt = "leave_one_out",
    out: Annotated[Optional[Path], typer.Option(help="Results JSON path (Markdown beside it).")] = None,
    fixed_defaults: FixedDefaultsOpt = False,
) -> None:
    """Full-ranking evaluation of a run, or of a model fitted here on the training split.
    A model fitted here gets the settings `train` would give it: for sasrec, every setting
    not given with --set is sized from the training data (the results' `defaults` says
    which): see docs/training-defaults.md."""
    from dataclasses import replace

    from shopformer.artifact import load_run, make_model
    from shopformer.evaluate.protocol import EvalConfig
    from shopformer.evaluate.report import rich_table, write_results
    from shopformer.experiment import evaluate_model, fit, reload_data, size_defaults
    from shopformer.dataset import prepare_folder

    if fixed_defaults and (run is not None or model is None):
        _fail("--fixed-defaults belongs to --model (a run keeps the settings it was trained with)")
    eval_cfg = EvalConfig(
        cutoffs=tuple(int(c) for c in k.split(",")), exclude_history=not include_history
    )
    defaults = None
    try:
        if run is not None:
            loaded = load_run(run)
            if loaded.info.get("fit_on") == "all":
                _fail(f"{run} was fitted on all data (--full): its test items were seen in training")
            d, s = reload_data(loaded, None)
            m, fit_s, source = loaded.model, loaded.info.get("fit_seconds"), loaded.info["data_dir"]
        elif model is not None:
            given = _pairs(set_, "--set")
            m = make_model(model, given)
            d, s = prepare_folder(data, _data_config(types, min_user, min_item, dedupe, protocol))
            defaults = size_defaults(m, _to_size(model, given, fixed_defaults), d, s)  # as `train` sizes it
            fit_s, source = round(fit(m, d, s), 3), str(data.resolve())
        else:
            _fail("give --run RUN_FOLDER or --model NAME")
            return
        context = {"dataset": source, "fit_seconds": fit_s, "seed": 0,
                   **({"defaults": defaults} if defaults is not None else {})}
        records = [evaluate_model(m, d, s, split, eval_cfg, context)]  # type: ignore[arg-type]
        if run is not None and loaded.repeats is not None:  # what its answers serve: past items let back in
            records.append(evaluate_model(loaded.repeats, d, s, split, replace(eval_cfg, exclude_history=False),  # type: ignore[arg-type]
                                          context))
            records[-1]["model"] = f"{records[0]['model']}+repeats"
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    record = records[0]
    console.print(rich_table(records))
    _print_sized(defaults)
    out = out or Path("results") / f"{record['model']}_{split}.json"
    md = write_results(records, out)
    console.print(f"results: {out} and {md}")


@app.command()
def recommend(
    run: Annotated[Path, typer.Option(help="A trained run folder.")],
    out: Annotated[Path, typer.Option(help="JSONL file to write.")] = Path("recommendations.jsonl"),
    split: Annotated[str, typer.Option(help="test | valid | all (all = next items after each full history).")] = "test",
    k: Annotated[int, typer.Option("--k")] = 10,
    include_history: Annotated[bool, typer.Option(help="Allow items already in the history.")] = False,
) -> None:
    """Export top-K per user to JSONL: {"user_id", "items", "scores"}."""
    from shopformer.artifact import load_run
    from shopformer.experiment import cases_for, export_recommendations, reload_data

    try:
        loaded = load_run(run)
        d, s = reload_data(loaded, None)
        cases = None if split == "all" else cases_for(s, split)  # type: ignore[arg-type]
        n = export_recommendations(loaded.model, d, cases, out, k, not include_history)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"wrote top-{k} for {n} users to {out}")


@app.command()
def explain(
    user: Annotated[str, typer.Argument(help="User id, as in the run's data.")],
    run: Annotated[Path, typer.Option(help="A trained run folder.")],
    k: Annotated[int, typer.Option("--k", min=1)] = 10,
    plot: Annotated[Optional[Path], typer.Option(help="Save the history x items attribution heatmap (PNG).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    include_history: Annotated[bool, typer.Option(help="Allow items already in the history.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Data folder (default: the run's).")] = None,
) -> None:
    """Recommend top-K for USER from their full history and say why, item by item."""
    import json

    from shopformer.explain.offline import explain_user, rich_table

    try:
        user = _run_user(user, run, data)
        ue = explain_user(run, user, k, not include_history, data)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    if json_:
        typer.echo(json.dumps(ue.to_dict(), indent=2))
    else:
        console.print(rich_table(ue))
    if plot is not None:
        from shopformer.explain.plot import plot_attribution

        plot_attribution(ue.explanation.attribution, plot, ue.event_labels(), ue.item_labels(), f"why: {user}")
        typer.echo(f"heatmap saved to {plot}", err=True)  # stderr: --json output stays parseable


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What a customer would type.")],
    run: Annotated[Path, typer.Option(help="A trained run folder (its catalog is searched; its model personalizes).")],
    k: Annotated[int, typer.Option("--k", min=1, max=100)] = 10,
    user: Annotated[Optional[str], typer.Option(help="Personalize for this user (from the run's data).")] = None,
    personal_weight: Annotated[Optional[float], typer.Option(
        min=0, help="Weight of the user's model scores (default: the search config's).")] = None,
    category: Annotated[Optional[list[str]], typer.Option(help="Keep products in this category (repeatable).")] = None,
    brand: Annotated[Optional[list[str]], typer.Option(help="Keep products of this brand (repeatable).")] = None,
    min_price: Annotated[Optional[float], typer.Option()] = None,
    max_price: Annotated[Optional[float], typer.Option()] = None,
    available_only: Annotated[bool, typer.Option("--available-only", help="Drop products marked unavailable.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild the index in RUN/search.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Data folder (default: the run's).")] = None,
) -> None:
    """Search the run's catalog: BM25 + product text vectors, typos and units handled;
    with --user, re-ordered by the run's model for that user."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from shopformer.search import SearchFilter
    from shopformer.search.offline import search_run

    try:
        flt = SearchFilter(categories=tuple(category or ()), brands=tuple(brand or ()), min_price=min_price,
                           max_price=max_price, available_only=available_only)
        user = _run_user(user, run, data) if user is not None else None
        result = search_run(run, query, k, flt, user, data, rebuild, personal_weight)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    if json_:
        typer.echo(json.dumps({**asdict(result), "hits": [asdict(h) for h in result.hits]}, indent=2, default=str))
        return
    shown = f"{result.query!r}" + (f" (searched as {result.corrected_query!r})" if result.corrected_query else "")
    table = Table(title=f"{shown}: {result.strategy}, {result.candidates} candidates")
    for col in ("#", "item", "title", "score", "lexical", "cosine"):
        table.add_column(col, justify="right" if col in ("#", "score", "lexical", "cosine") else "left")
    for i, h in enumerate(result.hits, 1):
        table.add_row(str(i), h.item_id, h.title or "", f"{h.score:.3f}", f"{h.lexical:.2f}", f"{h.cosine:.3f}")
    console.print(table)
    cats = ", ".join(f"{c['value']} ({c['count']})" for c in result.facets["categories"][:6])
    if cats:
        console.print(f"categories: {cats}")


@app.command("train-reranker")
def train_reranker_command(
    judgments: Annotated[Path, typer.Option(help="CSV with columns query, item_id, relevance.")],
    run: Annotated[Path, typer.Option(help="The run whose catalog index (RUN/search) gets the re-ranker.")],
    gain_offset: Annotated[float, typer.Option(help="Gain = relevance - this (e.g. 1 for 1..3 grades).")] = 0.0,
    data: Annotated[Optional[Path], typer.Option("--data", help="Data folder (default: the run's).")] = None,
) -> None:
    """Train the learned re-ranker (LightGBM lambdarank over query-product features) on
    judged queries and install it in RUN/search, where `shopformer search` uses it. For
    the server, copy RUN/search/reranker into the search folder (SHOPFORMER_SEARCH_DIR)."""
    from shopformer.search.offline import open_searcher, read_judgments, train_reranker

    try:
        judged = read_judgments(judgments, gain_offset)
        searcher = open_searcher(run, data)
        try:
            model = train_reranker(searcher, judged)
            searcher.reranker = model
            searcher.save(run / "search")
        finally:
            searcher.close()
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"re-ranker trained on {len(judged)} queries ({model.booster.best_iteration or model.booster.num_trees()} "
                  f"trees) and saved in {run / 'search' / 'reranker'}")


@app.command()
def index(
    run: Annotated[Path, typer.Option(help="A trained run folder (a Transformer: its item table is indexed).")],
    kind: Annotated[str, typer.Option(help="auto (exact below 100k items, else HNSW) | flat | hnsw | ivf | ivfpq")] = "auto",
) -> None:
    """Build the run's vector indexes now, with every CPU, into RUN/index: a server then
    loads them (memory-mapped) instead of building them at start-up."""
    from shopformer.artifact import load_run
    from shopformer.retrieve.faiss_index import FaissIndexConfig
    from shopformer.serve.retrieval import INDEX_DIR, is_vector_model, save_vector_indexes

    try:
        loaded = load_run(run)
        if not is_vector_model(loaded.model):
            _fail(f"{run} holds {loaded.info['model']}, which scores the whole catalog without a vector index")
        t0 = time.perf_counter()
        built = save_vector_indexes(loaded.model, run, FaissIndexConfig(kind=kind))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"built {built.kind} indexes over {len(built.users):,} items in {time.perf_counter() - t0:.1f} s "
                  f"-> {run / INDEX_DIR}")


@app.command()
def serve(
    run: Annotated[Optional[Path], typer.Option(help="Run folder to serve (else SHOPFORMER_RUN).")] = None,
    store: Annotated[Optional[str], typer.Option(help="Store URL (else SHOPFORMER_STORE_URL).")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="Log a line per request (uvicorn's access log).")] = True,
    workers: Annotated[int, typer.Option(min=1, help="Server processes on the port (each loads the model).")] = 1,
) -> None:
    """Run the HTTP API (settings from SHOPFORMER_* environment variables)."""
    from dataclasses import replace

    from shopformer.serve.app import serve as run_server
    from shopformer.serve.settings import ServeSettings

    try:
        settings = ServeSettings.from_env()
        if run is not None:
            settings = replace(settings, run=run)
        if store is not None:
            settings = replace(settings, store_url=store)
    except ValueError as exc:
        _fail(str(exc))
        return
    console.print(f"serving {settings.run or '(no model yet)'} on http://{host}:{port} (docs: /docs)")
    run_server(settings, host, port, access_log=access_log, workers=workers)


StoreOpt = Annotated[str, typer.Option("--store", envvar="SHOPFORMER_STORE_URL",
                                       help="Store URL (sqlite:///shop.db or postgresql://...).")]


@app.command()
def forget(
    user: Annotated[str, typer.Argument(help="The customer's user id.")],
    store: StoreOpt,
    compact: Annotated[bool, typer.Option("--compact", help="Also rewrite the database (SQLite VACUUM, "
                                          "PostgreSQL VACUUM FULL): slower, in proportion to the store.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
) -> None:
    """Erase a customer from the store (every event, searches included; bytes scrubbed from
    the database and its WAL) and print the receipt. API servers on the same store drop
    their cached state of the user by themselves (see `serve`)."""
    import json

    from rich.table import Table

    from shopformer.privacy import forget as forget_user
    from shopformer.privacy import served_model
    from shopformer.privacy.requests import OUTSIDE, audit_target, erasure_detail
    from shopformer.access_cli import cli_actor
    from shopformer.store import ErasureConfig, EventStore, StoreConfig, StoreError
    from shopformer.store.access import record_audit

    try:
        with EventStore(StoreConfig(url=store)) as s:
            user = _store_user(s, user)
            receipt = forget_user(s, user, served_model(s), ErasureConfig(compact=compact))
            record_audit(s, cli_actor(), "erase_user", audit_target(user), "ok", erasure_detail(receipt))
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
        return
    if json_:
        typer.echo(json.dumps({**receipt.to_dict(), "notes": list(OUTSIDE)}, indent=2))
        return
    table = Table(title=f"erasure receipt {receipt.receipt_id}: {receipt.status}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    d = receipt.to_dict()
    for key in ("user_id", "user_hash", "requested_at", "status", "model_version", "model_saw_user",
                "completed_version", "seconds"):
        table.add_row(key, str(d[key]))
    table.add_row("removed", ", ".join(f"{t}: {n}" for t, n in receipt.removed.items()))
    table.add_row("event types", ", ".join(f"{t}: {n}" for t, n in receipt.event_types.items()) or "-")
    table.add_row("storage", json.dumps(receipt.storage))
    console.print(table)
    for note in OUTSIDE:
        console.print(f"note: {note}", soft_wrap=True)


@app.command("export-user")
def export_user_command(
    user: Annotated[str, typer.Argument(help="The customer's user id.")],
    store: StoreOpt,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the JSON here instead of printing it.")] = None,
) -> None:
    """Everything the store holds about a customer as JSON (right of access): every event
    with every field, erasure receipts, and whether the served model was trained on them."""
    import json

    from shopformer.access_cli import cli_actor
    from shopformer.privacy import export_user, served_model
    from shopformer.privacy.requests import audit_target
    from shopformer.store import EventStore, StoreConfig, StoreError
    from shopformer.store.access import record_audit

    try:
        with EventStore(StoreConfig(url=store)) as s:
            user = _store_user(s, user)
            data = export_user(s, user, served_model(s))
            record_audit(s, cli_actor(), "export_user", audit_target(user), "ok", {"events": len(data["events"])})
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
        return
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    console.print(f"{len(data['events'])} events of {user!r} written to {out}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its data, runs and store.")] = Path("shopformer-demo"),
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after training (do not start the API).")] = False,
    port: Annotated[int, typer.Option(help="Port of the API (on 127.0.0.1).")] = 8000,
) -> None:
    """Ingest the bundled Online Retail sample into a local SQLite store, train and
    compare models, show top-10 lists, then serve the best model over HTTP and print
    the URL and example curl commands (API key: SHOPFORMER_API_KEY, else generated)."""
    from shopformer.demo import DemoError, run_demo

    try:
        run_demo(workdir, console, serve=not no_serve, port=port)
    except DemoError as exc:
        _fail(str(exc))


def _register_access() -> None:  # commands that live in their own module
    from shopformer.access_cli import audit, keys_app

    app.add_typer(keys_app, name="keys")
    app.command("audit")(audit)
    from shopformer.experiment_cli import experiment_app

    app.add_typer(experiment_app, name="experiment")
    from shopformer.rules_cli import rules_app

    app.add_typer(rules_app, name="rules")


_register_access()

# `shopformer retention` (issue 17): its options and work live in cli_retention / privacy.retention
from shopformer.cli_retention import retention as _retention  # noqa: E402

app.command("retention")(_retention)

# `shopformer report online` (issue 19): in report_cli / feedback.online_report
from shopformer.report_cli import report_app as _report_app  # noqa: E402

app.add_typer(_report_app, name="report")

# `shopformer retrain | versions | rollback` (issue 19): in retrain_cli / feedback.retrain
from shopformer.retrain_cli import retrain as _retrain, rollback as _rollback, versions as _versions  # noqa: E402

app.command("retrain")(_retrain)
app.command("versions")(_versions)
app.command("rollback")(_rollback)

# `shopformer audience` (issue 20): in audience_cli / rank.audience
from shopformer.audience_cli import audience as _audience  # noqa: E402
from shopformer.audience_cli import audience_fit as _audience_fit  # noqa: E402

app.command("audience")(_audience)
app.command("audience-fit")(_audience_fit)

# `shopformer answer [build]` (issue 24): in answers_cli / answers
from shopformer.answers_cli import answer_app as _answer_app  # noqa: E402

app.add_typer(_answer_app, name="answer")

# `shopformer repeats` (issue 21 pt 4): in repeats_cli / models.repeat
from shopformer.repeats_cli import repeats as _repeats  # noqa: E402

app.command("repeats")(_repeats)

# `shopformer forecast [fit]` (issue 24 pt 1): in forecast_cli / forecast
from shopformer.forecast_cli import forecast_app as _forecast_app  # noqa: E402

app.add_typer(_forecast_app, name="forecast")

# `shopformer risk [fit | score]` (issue 24 pt 2): in risk_cli / risk
from shopformer.risk_cli import risk_app as _risk_app  # noqa: E402

app.add_typer(_risk_app, name="risk")

# `shopformer distil` / `shopformer quantize` (issue 23 pt 3): in distil_cli / compression
from shopformer.distil_cli import distil as _distil, quantize as _quantize  # noqa: E402

app.command("distil")(_distil)
app.command("quantize")(_quantize)


if __name__ == "__main__":
    app()
