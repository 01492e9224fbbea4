"""``shopformer keys ...`` and ``shopformer audit``: API keys and the audit log from the
command line (the same store functions the admin API calls; see serve/access.py)."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
keys_app = typer.Typer(help="API keys with scopes (read, write, admin), stored hashed.", no_args_is_help=True)

StoreOpt = Annotated[str, typer.Option("--store", envvar="SHOPFORMER_STORE_URL",
                                       help="Store URL (sqlite:///shop.db or postgresql://...).")]


def cli_actor() -> str:
    """Who the audit log names for a command-line action."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key, e.g. 'storefront backend'.")],
    store: StoreOpt,
    scope: Annotated[list[str], typer.Option("--scope", help="read, write or admin (repeatable).")],
    rate: Annotated[Optional[str], typer.Option(help="This key's rate limit, e.g. 100/second.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a key and print it (this once: the store keeps only its SHA-256)."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import AccessError, create_key, record_audit

    try:
        with EventStore(StoreConfig(url=store)) as s:
            record, secret = create_key(s, name, scope, rate)
            record_audit(s, cli_actor(), "create_key", record.key_id, "ok",
                         {"name": record.name, "scopes": list(record.scopes), "rate_limit": record.rate_limit})
    except AccessError as exc:
        _fail(str(exc))
        return
    if json_:
        typer.echo(json.dumps({"key": secret, **record.to_dict()}, indent=2))
        return
    console.print(f"key [bold]{record.key_id}[/] ({record.name}; scopes {', '.join(record.scopes)}; "
                  f"rate limit {record.rate_limit or 'server default'})")
    typer.echo(secret)
    console.print("store it now: it is not shown again. Send it as the X-API-Key header.")


@keys_app.command("list")
def list_(
    store: StoreOpt,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The stored keys (never their secrets)."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import list_keys

    with EventStore(StoreConfig(url=store)) as s:
        found = list_keys(s, include_revoked)
    if json_:
        typer.echo(json.dumps([k.to_dict() for k in found], indent=2))
        return
    table = Table(title=f"{len(found)} API keys")
    for col in ("key_id", "name", "scopes", "rate limit", "created", "revoked"):
        table.add_column(col)
    for k in found:
        table.add_row(k.key_id, k.name, ",".join(k.scopes), k.rate_limit or "-", k.created_at.isoformat(timespec="seconds"),
                      k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-")
    console.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `shopformer keys list`).")],
    store: StoreOpt,
) -> None:
    """Revoke a key: API processes on the store refuse it within SHOPFORMER_SYNC_S seconds."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import AccessError, record_audit, revoke_key

    try:
        with EventStore(StoreConfig(url=store)) as s:
            record = revoke_key(s, key_id)
            record_audit(s, cli_actor(), "revoke_key", key_id, "ok", {"name": record.name})
    except AccessError as exc:
        _fail(str(exc))
        return
    console.print(f"revoked {record.key_id} ({record.name})")


def audit(
    store: StoreOpt,
    after: Annotated[int, typer.Option(help="Entries after this id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    action: Annotated[Optional[str], typer.Option(help="Only this action, e.g. erase_user.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """The audit log of admin actions (reloads, key changes, erasures, exports, retention), oldest first."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import audit_entries

    with EventStore(StoreConfig(url=store)) as s:
        entries = audit_entries(s, after, limit, action)
    if json_:
        for e in entries:
            typer.echo(json.dumps(e.to_dict()))
        return
    table = Table(title=f"audit log ({len(entries)} entries)")
    for col in ("id", "at", "actor", "action", "target", "outcome", "detail"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(str(e.entry_id), e.at.isoformat(timespec="seconds"), e.actor, e.action, e.target or "-",
                      e.outcome, json.dumps(e.detail)[:120])
    console.print(table)
