"""The admin console (``/admin``): server-rendered pages for the site owner.

``auth`` guards every page (an ``administrator`` signed in with the Flask session), ``queries``
holds the read-side helpers the pages share, ``views`` renders them. Every form carries a CSRF
token (Flask-WTF's ``CSRFProtect`` is global and not exempted here).
"""

from flask import Blueprint

bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

from bridge.admin import auth, views  # noqa: E402, F401  (routes register on import)
