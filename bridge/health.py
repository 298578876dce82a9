"""Operations endpoints: ``/healthz`` and ``/metrics`` (CONTRACT.md §10). Stub: issue 4."""

from flask import Blueprint

bp = Blueprint("health", __name__)
