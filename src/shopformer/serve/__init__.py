"""The HTTP API: ``create_app(settings)`` builds it, ``serve(settings, host, port)`` runs
it with uvicorn. Settings come from ``SHOPFORMER_*`` environment variables (see
:mod:`shopformer.serve.settings`).

Routes (all JSON; write routes need ``X-API-Key``):

=======  ===================================  ==========================================
GET      /v1/users/{user_id}/recommendations  top-k for a user (``k``, ``exclude_history``,
                                              ``available_only``, ``category``,
                                              ``min_price``, ``max_price``; ``explain``
                                              adds the reasons for every item)
POST     /v1/recommendations/session          top-k for an anonymous list of item ids
                                              (``"explain": true`` as above)
GET      /v1/items/{item_id}/similar          similar items
GET      /v1/items/{item_id}                  catalog entry + known to the model
GET      /v1/users/{user_id}                  recent events + known to the model
POST     /v1/events                           one event (write)
POST     /v1/events:batch                     a list of events, all or nothing (write)
PUT      /v1/catalog/items                    upsert products, all or nothing (write)
POST     /v1/admin/reload                     load a run and swap it in atomically (write)
GET      /health                              store + model status
GET      /metrics                             Prometheus text format
=======  ===================================  ==========================================
"""

from .app import create_app, serve
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]
