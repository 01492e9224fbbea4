"""Privacy requests: erasure with a receipt and access export (issue 17, points 2-3).

The store does the deleting and keeps the receipts (:mod:`shopformer.store.erasure`);
this package adds what needs the served model (did it see the user?) and builds the
export, for the CLI; the HTTP API uses the same functions with its in-memory model.
"""

from .requests import ModelView, export_user, forget, served_model

__all__ = ["ModelView", "export_user", "forget", "served_model"]
