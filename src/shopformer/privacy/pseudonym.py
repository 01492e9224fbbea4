"""Pseudonymous customer ids (issue 17, point 4): a keyed hash stands in for every
customer id before anything is stored, so data folders, stores, runs and logs never
hold the raw id.

A pseudonym is ``pu_`` (users) or ``ps_`` (sessions) followed by 32 characters of
lower-case base32 (``a-z2-7``: URL-safe, addressable in a path) encoding 20 bytes:

* 16 bytes (128 bits) of HMAC-SHA256(key, domain || id): stable for one key, different
  for another key, unlinkable to the id without the key, and collisions negligible
  (about 1e-20 for a billion customers). Users and sessions hash in separate domains,
  so a session id equal to a user id does not link the two.
* a 4-byte check, HMAC-SHA256(key, "check" || prefix || digest): it lets this key
  recognize its own pseudonyms.

Already-pseudonymous ids: mapping is idempotent. A value that is a pseudonym of THIS
key (its check verifies) is kept as it is, so re-ingesting a data folder exported
from a pseudonymized store, an operator pasting a pseudonym from a log into the API,
or mapping twice on one path never hashes twice. A value that has the shape of a
pseudonym but whose check fails was made with another key (or, with probability
2**-32 per value of exactly that shape, is a raw id that happens to look like one):
hashing it again would silently split those customers, so it is refused
(:class:`ForeignPseudonym`). Anyone who holds a pseudonym can use it as the id, exactly
as they could the raw id: a pseudonym hides the identity, not the access.

The key is the UTF-8 bytes of ``SHOPFORMER_PSEUDONYM_KEY`` (surrounding whitespace
removed), at least 16 bytes; make one with ``python -c "import secrets;
print(secrets.token_hex(32))"``. Losing it loses the link between raw ids and the
stored data; changing it splits every customer in two, which is why stores and data
folders record the key's :attr:`~PseudonymConfig.fingerprint` (an HMAC of a fixed
label, never the key) and refuse another key.

Only the id fields are mapped (``user_id``, ``session_id``): free text (``query``,
``context``) and caller-chosen ``event_id`` values are stored as given.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import polars as pl

ENV_VAR = "SHOPFORMER_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
USER_PREFIX = "pu_"
SESSION_PREFIX = "ps_"
Kind = Literal["user", "session"]

_PREFIX: dict[str, str] = {"user": USER_PREFIX, "session": SESSION_PREFIX}
_DOMAIN: dict[str, bytes] = {"user": b"shopformer/pseudonym/user\x00", "session": b"shopformer/pseudonym/session\x00"}
_CHECK = b"shopformer/pseudonym/check\x00"
_FINGERPRINT = b"shopformer/pseudonym/key-fingerprint/v1"
_DIGEST_BYTES = 16
_CHECK_BYTES = 4
#: the shape of any pseudonym (20 bytes in base32 = 32 characters, no padding)
SHAPE = re.compile(r"p[us]_[a-z2-7]{32}")


class PseudonymKeyError(ValueError):
    """The key is missing where it is required, or too short (names the variable)."""


class ForeignPseudonym(ValueError):
    """A value shaped like a pseudonym that this key did not make."""

    def __init__(self, value: str, fingerprint: str) -> None:
        super().__init__(
            f"{value!r} looks like a pseudonymous id but was not made with this key (fingerprint {fingerprint}): "
            f"it would be hashed a second time and split that customer; use the raw id, or the {ENV_VAR} "
            "it was made with"
        )
        self.value = value


@dataclass(frozen=True)
class PseudonymConfig:
    """The secret key (bytes, at least :data:`MIN_KEY_BYTES`). ``repr`` shows the
    fingerprint, never the key."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes):
            raise TypeError("PseudonymConfig.key must be bytes")
        if len(self.key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(
                f"{ENV_VAR} is {len(self.key)} bytes; a pseudonym key must be at least {MIN_KEY_BYTES} bytes "
                '(make one with: python -c "import secrets; print(secrets.token_hex(32))")'
            )

    @property
    def fingerprint(self) -> str:
        """32 hex characters naming the key (an HMAC of a fixed label): what stores and
        data folders record, safe to print and log."""
        return hmac.digest(self.key, _FINGERPRINT, "sha256")[:16].hex()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, required: bool = False) -> PseudonymConfig | None:
        """The key from ``SHOPFORMER_PSEUDONYM_KEY``; None when unset or empty, unless
        ``required`` (then :class:`PseudonymKeyError`). A key that is set but too short
        is always refused."""
        env = os.environ if env is None else env
        raw = env.get(ENV_VAR, "").strip()
        if not raw:
            if required:
                raise PseudonymKeyError(
                    f"{ENV_VAR} is not set: pseudonymous ids need the secret key in that variable "
                    '(make one with: python -c "import secrets; print(secrets.token_hex(32))")'
                )
            return None
        return cls(raw.encode("utf-8"))

    def __repr__(self) -> str:
        return f"PseudonymConfig(fingerprint={self.fingerprint!r})"


class Pseudonymizer:
    """Maps raw customer ids to pseudonyms with one key (see the module docstring)."""

    def __init__(self, config: PseudonymConfig) -> None:
        self.config = config
        self._key = config.key
        self.fingerprint = config.fingerprint

    def __repr__(self) -> str:
        return f"Pseudonymizer(fingerprint={self.fingerprint!r})"

    # -- one id -----------------------------------------------------------------------
    def _make(self, kind: Kind, raw: str) -> str:
        digest = hmac.digest(self._key, _DOMAIN[kind] + raw.encode("utf-8", "surrogatepass"), "sha256")[:_DIGEST_BYTES]
        return _PREFIX[kind] + self._encode(_PREFIX[kind], digest)

    def _encode(self, prefix: str, digest: bytes) -> str:
        check = hmac.digest(self._key, _CHECK + prefix.encode() + digest, "sha256")[:_CHECK_BYTES]
        return base64.b32encode(digest + check).decode("ascii").lower()

    def is_pseudonym(self, value: str) -> bool:
        """Whether ``value`` is a pseudonym (user or session) made with this key."""
        if not SHAPE.fullmatch(value):
            return False
        prefix, body = value[:3], value[3:]
        data = base64.b32decode(body.upper())
        return hmac.compare_digest(self._encode(prefix, data[:_DIGEST_BYTES]), body)

    def map(self, kind: Kind, value: str) -> str:
        """The pseudonym of ``value``; ``value`` itself when it already is one of this
        key; :class:`ForeignPseudonym` when it has the shape but not this key's check."""
        if SHAPE.fullmatch(value):
            if self.is_pseudonym(value):
                return value
            raise ForeignPseudonym(value, self.fingerprint)
        return self._make(kind, value)

    def user(self, user_id: str) -> str:
        return self.map("user", str(user_id))

    def session(self, session_id: str) -> str:
        return self.map("session", str(session_id))

    # -- columns ----------------------------------------------------------------------
    def column(self, kind: Kind, values: pl.Series) -> pl.Series:
        """A string column mapped (nulls stay null), each distinct value hashed once.
        Raises :class:`ForeignPseudonym` (its ``value`` names the first one found)."""
        import polars as pl

        values = values.cast(pl.String)
        distinct = values.drop_nulls().unique()
        if not len(distinct):
            return values
        mapped = pl.Series([self.map(kind, v) for v in distinct.to_list()], dtype=pl.String)
        return values.replace_strict(distinct, mapped, default=None, return_dtype=pl.String)

    def users(self, values: pl.Series) -> pl.Series:
        return self.column("user", values)

    def sessions(self, values: pl.Series) -> pl.Series:
        return self.column("session", values)

    def foreign(self, ids: Iterable[str], sample: int = 1000) -> int:
        """How many of the first ``sample`` ``ids`` are NOT pseudonyms of this key (e.g.
        a run's user vocabulary, a store's stored ids): 0 means they were made with it."""
        n = 0
        for i, value in enumerate(ids):
            if i >= sample:
                break
            n += not self.is_pseudonym(str(value))
        return n


def from_env(env: Mapping[str, str] | None = None, *, required: bool = False) -> Pseudonymizer | None:
    """A :class:`Pseudonymizer` for ``SHOPFORMER_PSEUDONYM_KEY``, or None when it is unset
    (see :meth:`PseudonymConfig.from_env`)."""
    config = PseudonymConfig.from_env(env, required=required)
    return None if config is None else Pseudonymizer(config)


__all__ = [
    "ENV_VAR", "ForeignPseudonym", "MIN_KEY_BYTES", "PseudonymConfig", "PseudonymKeyError", "Pseudonymizer",
    "SESSION_PREFIX", "SHAPE", "USER_PREFIX", "from_env",
]
