"""The public ``/register`` page (CONTRACT.md §4). Stub: issue 4."""

from flask import Blueprint

bp = Blueprint("signup", __name__)
