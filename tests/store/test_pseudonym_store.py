"""A store's customer ids are raw or one key's pseudonyms, and data folders moving in and
out of it (import_folder, export_snapshot) carry that with them."""

from __future__ import annotations

import json

import pytest

from shopformer.ingest import ingest
from shopformer.privacy.pseudonym import PseudonymConfig, Pseudonymizer
from shopformer.store import EventStore, StoreConfig, export_snapshot, import_folder
from shopformer.store.pseudonyms import PseudonymMismatch, bind, stored_key

P = Pseudonymizer(PseudonymConfig(b"store pseudonym key, 32 bytes!!!"))
SEQUENCES = "annRaw41 a b\nbobRaw52 b c\n"


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "seq.txt").write_text(SEQUENCES)
    ingest(tmp_path / "seq.txt", "sequence", tmp_path / "pseudo", pseudonyms=P)
    ingest(tmp_path / "seq.txt", "sequence", tmp_path / "raw")
    return tmp_path


def test_folders_bind_stores_and_snapshots_say_so(folders):
    url = f"sqlite:///{folders / 'a.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, folders / "pseudo")
        assert stored_key(store) == P.fingerprint
        with pytest.raises(PseudonymMismatch, match="these ids are raw"):
            import_folder(store, folders / "raw")
        assert store.count_events() == 4
        export_snapshot(store, folders / "snap")
    marker = json.loads((folders / "snap" / "pseudonyms.json").read_text())
    assert marker["key_fingerprint"] == P.fingerprint

    raw_url = f"sqlite:///{folders / 'b.db'}"
    with EventStore(StoreConfig(raw_url)) as store:
        import_folder(store, folders / "raw")
        with pytest.raises(PseudonymMismatch, match="raw customer ids"):
            import_folder(store, folders / "pseudo")
        export_snapshot(store, folders / "snap")  # raw ids now: the old marker must go
    assert not (folders / "snap" / "pseudonyms.json").exists()


def test_a_store_of_already_mapped_events_is_bound_to_their_key(tmp_path):
    with EventStore(StoreConfig(f"sqlite:///{tmp_path / 'c.db'}")) as store:
        store.add_events([{"user_id": P.user("ann"), "item_id": "a", "event_type": "view"}])
        bind(store, P.fingerprint, P.is_pseudonym, claim=False)  # a check only
        assert stored_key(store) is None
        other = Pseudonymizer(PseudonymConfig(b"x" * 32))
        with pytest.raises(PseudonymMismatch, match="raw customer ids"):
            bind(store, other.fingerprint, other.is_pseudonym)
        bind(store, P.fingerprint, P.is_pseudonym)
        assert stored_key(store) == P.fingerprint
        bind(store, P.fingerprint)  # bound: the fingerprint decides now
        with pytest.raises(PseudonymMismatch, match="another key"):
            bind(store, other.fingerprint, other.is_pseudonym)
