"""Privacy requests: erasure with a receipt and access export (issue 17, points 2-3), and
pseudonymous customer ids (point 4, :mod:`.pseudonym`), and data retention (point 5,
:mod:`.retention`: purges of expired events from the store and from data folders).

The store does the deleting and keeps the receipts (:mod:`shopformer.store.erasure`);
this package adds what needs the served model (did it see the user?) and builds the
export, for the CLI; the HTTP API uses the same functions with its in-memory model.
"""

from .pseudonym import PseudonymConfig, Pseudonymizer
from .requests import ModelView, export_user, forget, served_model

__all__ = ["ModelView", "PseudonymConfig", "Pseudonymizer", "export_user", "forget", "served_model"]
