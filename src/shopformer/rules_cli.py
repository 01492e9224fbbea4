"""``shopformer rules add|list|remove``: business rules from the command line (the same
functions the admin API calls, see serve/routes/rules.py; what they do:
:mod:`shopformer.rank.rules`). Every change is in the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .access_cli import StoreOpt, cli_actor

console = Console()
rules_app = typer.Typer(help="Business rules applied to every recommendation and search answer: boost, bury, "
                             "pin, exclude.", no_args_is_help=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def _match(value: str) -> dict[str, Any]:
    key, sep, rest = value.partition("=")
    key = key.strip()
    if key == "unavailable" and not sep:
        return {"unavailable": True}
    if not sep or not rest.strip():
        _fail(f"--match {value!r}: expected category=C, brand=B, tag=T, items=ID1,ID2 or unavailable")
    if key == "items":
        return {"items": [i.strip() for i in rest.split(",") if i.strip()]}
    return {key: rest.strip()}


def _when(value: Optional[str], name: str) -> Optional[datetime]:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--{name} {value!r}: expected an ISO time with its offset, e.g. 2026-12-01T00:00:00Z")
        return None


@rules_app.command("add")
def add(
    kind: Annotated[str, typer.Argument(help="boost, bury, pin or exclude.")],
    store: StoreOpt,
    match: Annotated[str, typer.Option(help="category=C, brand=B, tag=T, items=ID1,ID2 or unavailable.")],
    weight: Annotated[float, typer.Option(help="boost / bury: added to / taken from the normalized score "
                                               "(1 lifts an item above every unmatched one).")] = 0.0,
    position: Annotated[Optional[int], typer.Option(help="pin: the 1-based position.")] = None,
    priority: Annotated[int, typer.Option(help="pin: the higher wins a contested position.")] = 0,
    starts: Annotated[Optional[str], typer.Option(help="UTC start, e.g. 2026-12-01T00:00:00Z.")] = None,
    ends: Annotated[Optional[str], typer.Option(help="UTC end (exclusive).")] = None,
    audience: Annotated[str, typer.Option(help="all, known (customers with a history), new (none), or user ids "
                                               "separated by commas.")] = "all",
    note: Annotated[Optional[str], typer.Option(help="Why the rule exists.")] = None,
    query: Annotated[Optional[list[str]], typer.Option(
        "--query", help="Search only: apply to queries holding this phrase (repeatable); never to recommendations.")] = None,
) -> None:
    """Add a rule: every API process on the store applies it within SHOPFORMER_SYNC_S seconds."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import record_audit
    from shopformer.store.rules import RuleError, add_rule, check_rule

    who: str | list[str] = audience if audience in ("all", "known", "new") else [
        u.strip() for u in audience.split(",") if u.strip()]
    with EventStore(StoreConfig(url=store)) as s:
        try:
            rule = check_rule(kind, _match(match), weight, position, priority, _when(starts, "starts"),
                              _when(ends, "ends"), who, note, query)
        except RuleError as exc:
            record_audit(s, cli_actor(), "rule_add", kind, "failed", {"error": str(exc)})
            _fail(str(exc))
            return
        stored = add_rule(s, rule, cli_actor())
        record_audit(s, cli_actor(), "rule_add", str(stored.rule_id), "ok", _detail(stored.to_dict()))
    console.print(f"rule [bold]{stored.rule_id}[/] added: {_describe(stored.to_dict())}")


@rules_app.command("remove")
def remove(rule_id: Annotated[int, typer.Argument(help="The rule's id (see `shopformer rules list`).")],
           store: StoreOpt) -> None:
    """Remove a rule."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import record_audit
    from shopformer.store.rules import RuleError, remove_rule

    with EventStore(StoreConfig(url=store)) as s:
        try:
            removed = remove_rule(s, rule_id)
        except RuleError as exc:
            _fail(str(exc))
            return
        record_audit(s, cli_actor(), "rule_remove", str(rule_id), "ok", _detail(removed.to_dict()))
    console.print(f"rule [bold]{rule_id}[/] removed")


@rules_app.command("list")
def list_(store: StoreOpt, json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every stored rule, oldest first."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.rules import all_rules

    with EventStore(StoreConfig(url=store)) as s:
        found = [r.to_dict() for r in all_rules(s)]
    if json_:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"{len(found)} rules")
    for col in ("id", "rule", "window", "audience", "by"):
        table.add_column(col)
    for r in found:
        window = f"{r['starts_at'] or '…'} – {r['ends_at'] or '…'}" if r["starts_at"] or r["ends_at"] else "always"
        audience = r["audience"] if isinstance(r["audience"], str) else f"{len(r['audience'])} users"
        table.add_row(str(r["rule_id"]), _describe(r), window, audience, r["created_by"] or "")
    console.print(table)


def _describe(r: dict[str, Any]) -> str:
    key, value = next(iter(r["match"].items()))
    what = f"{key}={','.join(value) if isinstance(value, list) else value}"
    when = f" in searches for {' | '.join(repr(q) for q in r['queries'])}" if r.get("queries") else ""
    if r["kind"] in ("boost", "bury"):
        return f"{r['kind']} {what} by {r['weight']:g}{when}"
    if r["kind"] == "pin":
        return f"pin {what} at {r['position']} (priority {r['priority']}){when}"
    return f"exclude {what}{when}"


def _detail(rule: dict[str, Any]) -> dict[str, Any]:
    """The audit entry's detail: the rule without user ids (an audience list names customers)."""
    if isinstance(rule.get("audience"), list):
        rule = {**rule, "audience": f"{len(rule['audience'])} user ids"}
    return rule
