"""The Pseudonymizer: keyed, stable, addressable, idempotent, refusing short keys and
other keys' pseudonyms."""

from __future__ import annotations

import polars as pl
import pytest

from shopformer.privacy.pseudonym import (
    ENV_VAR,
    SHAPE,
    ForeignPseudonym,
    PseudonymConfig,
    PseudonymKeyError,
    Pseudonymizer,
    from_env,
)
from shopformer.types import unaddressable

KEY = b"k" * 32


def make(key: bytes = KEY) -> Pseudonymizer:
    return Pseudonymizer(PseudonymConfig(key))


def test_stable_keyed_and_separated_by_kind():
    p, q = make(), make(b"another key, 32 bytes long......")
    a = p.user("alice")
    assert a == make().user("alice") and a != p.user("bob")  # stable, and one per customer
    assert a != q.user("alice")  # another key, another pseudonym
    assert p.session("alice") != a and p.session("alice").startswith("ps_") and a.startswith("pu_")
    assert p.fingerprint == make().fingerprint != q.fingerprint
    assert KEY.hex() not in p.fingerprint and "k" * 16 not in repr(p.config)  # the key is never shown


def test_output_is_addressable_and_holds_128_bits():
    p = make()
    for raw in ("alice", "a/b", "..", "ünïcødé", "x" * 256, "17850"):
        out = p.user(raw)
        assert SHAPE.fullmatch(out) and unaddressable(out) is None, out
        assert len(out) == 3 + 32  # 20 bytes in base32: a 16-byte digest and a 4-byte check
    assert len({p.user(str(i)) for i in range(20_000)}) == 20_000


def test_idempotent_for_its_own_pseudonyms_and_refuses_other_keys():
    p, q = make(), make(b"another key, 32 bytes long......")
    a = p.user("alice")
    assert p.user(a) == a and p.session(a) == a and p.is_pseudonym(a)
    assert not q.is_pseudonym(a) and not p.is_pseudonym("alice")
    with pytest.raises(ForeignPseudonym, match="another key|not made with this key") as err:
        q.user(a)
    assert err.value.value == a
    forged = a[:-1] + ("a" if a[-1] != "a" else "b")  # the right shape, a wrong check
    with pytest.raises(ForeignPseudonym):
        p.user(forged)


def test_short_or_missing_keys_are_refused_naming_the_variable():
    with pytest.raises(PseudonymKeyError, match=ENV_VAR):
        PseudonymConfig(b"x" * 15)
    with pytest.raises(PseudonymKeyError, match=ENV_VAR):
        from_env({ENV_VAR: "too short"})
    with pytest.raises(PseudonymKeyError, match=f"{ENV_VAR} is not set"):
        from_env({}, required=True)
    assert from_env({}) is None and from_env({ENV_VAR: "  "}) is None
    assert from_env({ENV_VAR: " " + "y" * 16 + "\n"}).fingerprint == make(b"y" * 16).fingerprint  # stripped


def test_columns_map_each_value_and_keep_nulls():
    p = make()
    col = pl.Series(["alice", None, "bob", "alice", p.user("cy")])
    assert p.users(col).to_list() == [p.user("alice"), None, p.user("bob"), p.user("alice"), p.user("cy")]
    assert p.sessions(pl.Series([None, None], dtype=pl.String)).to_list() == [None, None]
    assert p.foreign([p.user("a"), "raw", p.session("s")]) == 1
