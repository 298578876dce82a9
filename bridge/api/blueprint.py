"""The API blueprint object, apart from the resource modules that register on it (no import cycle)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")
