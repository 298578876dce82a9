"""API: deliveries. Stub."""

from bridge.api import bp  # noqa: F401
