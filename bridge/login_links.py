"""One-time login links ``/login/TOKEN`` (CONTRACT.md §7). Stub: issue 7."""

from flask import Blueprint

bp = Blueprint("login", __name__)
