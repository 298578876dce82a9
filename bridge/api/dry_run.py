"""API: dry_run. Stub."""

from bridge.api import bp  # noqa: F401
