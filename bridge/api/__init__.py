"""The JSON API (``/api``), one module per resource; every route needs a Bearer API token."""

from bridge.api import batches, connections, deliveries, dry_run, events, users  # noqa: F401  (routes register on import)
from bridge.api.blueprint import bp

__all__ = ["bp"]
