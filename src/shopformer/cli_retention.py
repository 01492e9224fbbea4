"""`shopformer retention`: set or show the store's retention policy and purge now (the store
and/or a data folder). Registered by :mod:`shopformer.cli`; the work is in
:mod:`shopformer.privacy.retention`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{t}: {n:,}" for t, n in counts.items()) or "nothing"


def retention(
    store: Annotated[Optional[str], typer.Option("--store", help="Store URL (sqlite:///shop.db or postgresql://...): "
                                                 "its policy is set or shown and its expired events purged.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Data folder whose events.parquet is rewritten "
                                                 "without expired events (before `shopformer train`).")] = None,
    days: Annotated[Optional[str], typer.Option("--days", help="Maximum event age in days, every type "
                                                "(or 'forever').")] = None,
    type_: Annotated[Optional[list[str]], typer.Option("--type", help="Per event type, overriding --days: TYPE=DAYS "
                                                       "(e.g. purchase=730, search=30; TYPE=forever keeps it); "
                                                       "repeatable.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the store's policy (keep every event).")] = False,
    show: Annotated[bool, typer.Option("--show", help="Show the store's policy and latest purges; purge nothing.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be purged; change nothing "
                                          "(not even the policy).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Events deleted per transaction.")] = 5000,
    compact: Annotated[bool, typer.Option("--compact", help="Also rewrite the database afterwards (SQLite VACUUM, "
                                          "PostgreSQL VACUUM FULL; blocks writers meanwhile).")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Retention: events older than the policy's age are purged. With --store, --days/--type
    set the store's policy (what API servers on it apply every SHOPFORMER_RETENTION_CHECK_S
    seconds), then the store is purged now (bytes scrubbed, logged). With --data, the folder's
    events.parquet is rewritten without expired events (policy from --days/--type, else the
    store's), so `shopformer train` on it reads only what is kept."""
    from shopformer.access_cli import cli_actor
    from shopformer.privacy.retention import LeaseHeld, purge_folder, purge_store
    from shopformer.store.access import record_audit
    from shopformer.store import (
        EventStore,
        PurgeConfig,
        RetentionConfig,
        StoreConfig,
        StoreError,
    )

    if store is None and data is None:
        _fail("give --store URL and/or --data DIR")
    given: RetentionConfig | None = None
    try:
        if days is not None or type_:
            types = RetentionConfig.parse_types(type_ or [], "--type")
            try:
                given = RetentionConfig(days=days, types=types)
            except ValueError as exc:
                raise ValueError(f"--days: {exc}") from None
        config = PurgeConfig(batch_size=batch_size, compact=compact)
    except ValueError as exc:
        _fail(str(exc))
        return
    out: dict[str, Any] = {"policy": None, "store": None, "data": None}
    policy = given
    try:
        if store is not None:
            with EventStore(StoreConfig(url=store)) as s:
                if clear and not dry_run:
                    s.set_retention_policy(None)
                    record_audit(s, cli_actor(), "set_retention_policy", None, "ok", {"policy": None})
                elif given is not None and not dry_run:
                    s.set_retention_policy(given)
                    record_audit(s, cli_actor(), "set_retention_policy", None, "ok", {"policy": given.to_dict()})
                policy = given if given is not None else (None if clear else s.retention_policy())
                if show:
                    out["purges"] = [p.to_dict() for p in s.purges(limit=10)]
                elif policy is not None and policy.active:
                    out["store"] = purge_store(s, policy, config=config, dry_run=dry_run, trigger="cli",
                                               actor=cli_actor()).to_dict()
                elif not clear:
                    _fail("no retention policy in the store: give --days and/or --type")
        if data is not None and not show:
            if policy is None or not policy.active:
                _fail("no retention policy to apply to the folder: give --days and/or --type (or --store with a policy)")
            out["data"] = purge_folder(data, policy, dry_run=dry_run).to_dict()
    except (StoreError, LeaseHeld, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    out["policy"] = policy.to_dict() if policy is not None else None
    if json_:
        typer.echo(json.dumps(out, indent=2))
        return
    _print(out, policy, dry_run, clear)


def _print(out: dict[str, Any], policy: Any, dry_run: bool, clear: bool) -> None:
    verb = "would delete" if dry_run else "deleted"
    console.print(f"policy: {'cleared (keep everything)' if clear else (policy or 'none (keep everything)')}"
                  + (" [dim](dry run: not saved)[/]" if dry_run else ""), soft_wrap=True)
    if out["store"] is not None:
        r = out["store"]
        console.print(f"store: {verb} {r['deleted']:,} events ({_counts(r['event_types'])}) and "
                      f"{r['impressions']:,} impressions"
                      + ("" if dry_run else f" in {r['batches']} batches, {r['seconds']:.2f} s, purge {r['purge_id']}; "
                         f"storage: {json.dumps(r['storage'])}"), soft_wrap=True)
    if out["data"] is not None:
        r = out["data"]
        console.print(f"data {r['folder']}: {verb} {r['deleted']:,} events ({_counts(r['event_types'])}), "
                      f"{r['kept']:,} kept", soft_wrap=True)
    for p in out.get("purges", []):
        console.print(f"purge {p['purge_id']} {p['started_at']} {p['trigger']} {p['status']}: {p['deleted']:,} "
                      f"({_counts(p['event_types'])}) in {p['seconds']:.2f} s", soft_wrap=True)
