"""Which customer ids a store holds: raw ids, or pseudonyms made with one key.

The ``serving_state`` entry ``pseudonym_key`` holds the fingerprint of the key (see
:mod:`shopformer.privacy.pseudonym`; an HMAC of a fixed label, never the key) once the
store is bound to pseudonyms: by the first API server started with
``SHOPFORMER_PSEUDONYM_KEY``, or by importing a pseudonymous data folder. From then on
every process must bring the same key, and a process without one is refused: raw ids
beside pseudonyms, or two keys' pseudonyms, would silently split every customer in two.

A store that has no fingerprint but holds events holds raw ids, unless its first
events (by position) are all pseudonyms of the key presented (events a program added
itself, already mapped): then it is bound to that key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import select

from .engine import StoreError
from .schema import events, serving_state

if TYPE_CHECKING:
    from .base import EventStore

#: ``serving_state`` name of the key fingerprint
STATE = "pseudonym_key"
#: stored ids looked at to tell raw ids from pseudonyms in a store without a fingerprint
SAMPLE = 1000
_VAR = "SHOPFORMER_PSEUDONYM_KEY"


class PseudonymMismatch(StoreError):
    """The ids in the store and the key (or its absence) do not go together."""


def stored_key(store: EventStore) -> str | None:
    """The fingerprint of the key the store's customer ids were made with; None: raw."""
    return store.get_state(STATE)


def bind(store: EventStore, fingerprint: str | None, is_pseudonym: Callable[[str], bool] | None = None, *,
         claim: bool = True) -> None:
    """Check that ids mapped with the key of ``fingerprint`` (None: no key, raw ids) go
    with what the store holds; raise :class:`PseudonymMismatch` saying what to do when
    they do not. ``is_pseudonym``: whether a stored id is a pseudonym of that key (to
    accept a store without a fingerprint whose events are already pseudonyms).
    ``claim``: record the fingerprint in a store that has none (else only check)."""
    stored = stored_key(store)
    if fingerprint is None:
        if stored is not None:
            raise PseudonymMismatch(
                f"this store holds pseudonymous customer ids (key fingerprint {stored}) and these ids are raw: "
                f"every raw id would miss its customer's data; set {_VAR} to the key the store was written with "
                "(API, CLI), or ingest data folders with --pseudonymize and that key")
        return
    if stored is not None:
        if stored != fingerprint:
            raise PseudonymMismatch(
                f"this store's customer ids are pseudonyms of another key (fingerprint {stored}; {_VAR} has "
                f"{fingerprint}): every customer would be split in two; start with the key the store was written "
                "with")
        return
    with store._engine.connect() as conn:
        first = conn.execute(select(events.c.user_id).order_by(events.c.position).limit(SAMPLE)).scalars().all()
    raw = len(first) if is_pseudonym is None else sum(not is_pseudonym(u) for u in first)
    if raw:
        raise PseudonymMismatch(
            f"this store holds events with raw customer ids ({raw} of its first {len(first)} events), written "
            f"without {_VAR}: pseudonyms beside them would split every customer in two; pseudonymize into a new "
            "store (`shopformer ingest --pseudonymize`, then import the folder), or serve this one without the key")
    if claim:
        _claim(store, fingerprint)


def _claim(store: EventStore, fingerprint: str) -> None:
    """Record the fingerprint unless another process recorded one first (then that one
    must be the same key)."""
    ins = store._insert(serving_state).values(name=STATE, value=fingerprint, updated_at=datetime.now(timezone.utc))
    stmt = ins.on_conflict_do_nothing(index_elements=["name"])
    store._run_write(lambda conn: conn.execute(stmt))
    won = stored_key(store)
    if won != fingerprint:
        raise PseudonymMismatch(f"another process bound this store to another pseudonym key (fingerprint {won}) "
                                f"at the same time; {_VAR} has {fingerprint}")


__all__ = ["PseudonymMismatch", "SAMPLE", "STATE", "bind", "stored_key"]
