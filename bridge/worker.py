"""The delivery worker. Stub: issue 4."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Start the inline worker thread when ``BRIDGE_WORKER=inline`` (issue 4)."""
