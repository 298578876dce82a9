"""crm-bridge: the app factory.

``create_app`` builds the app from three configuration layers, attaches the extensions, the
blueprints and the ``bridge`` CLI group, starts the inline delivery worker when
``BRIDGE_WORKER=inline``, and does the set-up a first request would otherwise pay for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from bridge import config as config_module


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    instance_path = os.path.abspath(os.environ.get("BRIDGE_INSTANCE_PATH") or "instance")
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    from bridge.admin.sessions import CookieSessionInterface

    app.session_interface = CookieSessionInterface()
    app.config.from_object(config_module.DefaultConfig)
    app.config.from_pyfile("config.py", silent=True)
    config_module.load_environment(app.config)
    if test_config:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    config_module.finalise(app.config, app.instance_path)
    if int(app.config.get("BRIDGE_TRUSTED_PROXIES") or 0) > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client address (rate limits, logs) through that many X-Forwarded-For hops only.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["BRIDGE_TRUSTED_PROXIES"]))  # type: ignore[method-assign]

    from bridge import database, errors, logs
    from bridge.extensions import csrf, db, migrate

    logs.install_scrubbing()
    database.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    csrf.init_app(app)
    errors.init_app(app)

    _register_blueprints(app)

    from bridge import cli
    from bridge.delivery import inline_worker as worker_runners

    cli.init_app(app)
    worker_runners.init_app(app)
    _prepare_for_requests(app)
    return app


def _prepare_for_requests(app: Flask) -> None:
    """Do now what the first request would otherwise do: import every adapter (entry points are
    loaded on first use, and reading their metadata and importing them was most of a fresh
    process's first webhook) and build the URL matcher. No database connection is opened, so
    ``gunicorn --preload`` does this once in the master and forked workers share it safely."""
    from bridge.connections.adapter_registry import adapter_types

    adapter_types()
    app.url_map.update()


def _register_blueprints(app: Flask) -> None:
    from bridge import health
    from bridge.accounts import login_links, signup
    from bridge.admin import bp as admin_bp
    from bridge.api import bp as api_bp
    from bridge.extensions import csrf
    from bridge.inbound import activity_bp, inbound_bp

    # Machine-to-machine endpoints authenticate with keys and tokens, not cookies: no CSRF.
    for machine_bp in (inbound_bp, activity_bp, api_bp, health.bp):
        csrf.exempt(machine_bp)
        app.register_blueprint(machine_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(signup.bp)
    app.register_blueprint(login_links.bp)
