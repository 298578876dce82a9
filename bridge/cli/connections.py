"""CLI: connections. Stub."""

from bridge.cli import bridge_group  # noqa: F401
