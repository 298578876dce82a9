"""Browser tests: the console driven in real headless Chromium (Debian's ``chromium`` through
Playwright's Python package; never a downloaded browser).

One browser per session; each test gets a fresh context (cookies, clipboard permissions) and a
page that records console errors. The app runs under a real threaded server on loopback
(``LiveServer``): Playwright's sync API runs its own event loop, so the app cannot share it.
Without ``/usr/bin/chromium`` (or the ``playwright`` package) every test here is skipped with
the reason; ``.ci/run`` installs Chromium so CI always runs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import ADMIN_EMAIL, ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, WIDE, Tab
from werkzeug.security import generate_password_hash

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # the fake FluentCRM


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    manager = sync_playwright().start()
    try:
        launched = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()
    finally:
        manager.stop()


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # The fake CRM listens on loopback; webhook URLs use the live server's address.
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_BASE_URL": None}


@pytest.fixture
def server(app) -> Iterator[Any]:
    from support import LiveServer

    with LiveServer(app) as live:
        yield live


@pytest.fixture
def admin(app) -> int:
    from bridge.accounts.users import ADMIN_ROLE, create_user
    from bridge.extensions import db

    with app.app_context():
        user = create_user(
            email=ADMIN_EMAIL,
            password_hash=generate_password_hash(ADMIN_PASSWORD, method="pbkdf2:sha256:1000"),
            role=ADMIN_ROLE,
        )
        db.session.commit()
        return user.id


@pytest.fixture
def tab(browser, server, admin) -> Iterator[Tab]:
    context = browser.new_context(
        viewport={"width": WIDE, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    current = Tab(page=page, base=server.url)
    page.on("console", lambda message: current.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: current.errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield current
    context.close()
    assert current.errors == [], current.errors
