"""A fresh crm-bridge site for a bench: the set-up every bench makes before it measures."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def fresh_site(
    crm_settings: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None
) -> Iterator[tuple[Any, str]]:
    """Inside the block: an app context over a fresh schema (every table dropped and made
    again) with the default roles and one FluentCRM connection ``fluent`` with
    ``crm_settings``; yields (connection, access key). What the block writes is committed after
    it, and the engine's pool is emptied, so the app the bench then serves (other processes)
    starts from a clean database and nothing of this process holds it."""
    from bridge import create_app
    from bridge.accounts.users import ensure_default_roles
    from bridge.connections.service import create_connection
    from bridge.extensions import db

    app = create_app(config)
    with app.app_context():
        db.drop_all()
        db.create_all()
        ensure_default_roles()
        connection, key = create_connection("fluent", "fluentcrm", dict(crm_settings or {}))
        db.session.flush()
        yield connection, key
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
