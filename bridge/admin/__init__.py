"""The admin console (``/admin``): server-rendered pages for the site owner.

``sessions`` is the signed cookie the console signs in with (installed for the whole app by
``create_app``); ``auth`` guards every page (an ``administrator`` signed in with the Flask
session), ``queries`` holds the read-side helpers the pages share, ``views`` renders them.
Every form carries a CSRF token (Flask-WTF's ``CSRFProtect`` is global and not exempted here).
"""

from bridge.admin import auth, batches, connection_views, people, views  # noqa: F401  (routes register on import)
from bridge.admin.blueprint import bp

__all__ = ["bp"]
