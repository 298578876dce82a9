"""API: users. Stub."""

from bridge.api import bp  # noqa: F401
