"""Store: events and the product catalog in SQLite (WAL, the default) or PostgreSQL.

``EventStore(StoreConfig(url))`` — see :mod:`shopformer.store.base` for the guarantees
(durable before acknowledged, idempotent ``event_id``, atomic batches and upserts).
``export_snapshot`` / ``import_folder`` bridge the store and an ingested data folder.
``forget_user`` / ``erasures`` erase a customer with a receipt (:mod:`.erasure`).
``purge_events`` / ``retention_policy`` apply a retention policy (:mod:`.retention`).
"""

from .base import AddResult, EventStore, StoreConfig
from .engine import StoreError
from .erasure import ErasureConfig, ErasureReceipt
from .fingerprint import EventConflict, fingerprint
from .retention import PurgeConfig, PurgeResult, RetentionConfig
from .snapshot import ImportResult, export_snapshot, import_folder

__all__ = [
    "AddResult",
    "ErasureConfig",
    "ErasureReceipt",
    "EventConflict",
    "EventStore",
    "ImportResult",
    "PurgeConfig",
    "PurgeResult",
    "RetentionConfig",
    "StoreConfig",
    "StoreError",
    "export_snapshot",
    "fingerprint",
    "import_folder",
]
