"""What the browser tests share apart from fixtures (test modules never import conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"  # git-ignored
ADMIN_EMAIL = "owner@example.com"
ADMIN_PASSWORD = "browser-test-password-42"
NARROW, WIDE = 390, 1280


@dataclass
class Tab:
    """A page with the console errors it logged; ``expected_errors`` are the statuses a test
    asked for on purpose (a 404 page logs "Failed to load resource")."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)

    def go(self, path: str, *, status: int = 200) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, (path, response and response.status)
        if status >= 400:
            self.errors[:] = [e for e in self.errors if "Failed to load resource" not in e]
        return response

    def width(self, pixels: int) -> None:
        self.page.set_viewport_size({"width": pixels, "height": 900})

    def scroll_width(self) -> int:
        return int(self.page.evaluate("document.documentElement.scrollWidth"))

    def clipped(self) -> list[str]:
        """Cards whose content is wider than they are (a table scrolling inside its card hides
        its last columns, Retry buttons and all)."""
        script = """[...document.querySelectorAll('.card')]
            .filter(card => card.scrollWidth > card.clientWidth + 1)
            .map(card => (card.querySelector('h2') || card).textContent.trim().slice(0, 60))"""
        return list(self.page.evaluate(script))

    def shoot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        width = self.page.viewport_size["width"]
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)

    def sign_in(self) -> None:
        self.go("/admin/login")
        self.page.fill("input[name=email]", ADMIN_EMAIL)
        self.page.fill("input[name=password]", ADMIN_PASSWORD)
        self.page.click("button:has-text('Sign in')")
        self.page.wait_for_url(self.base + "/admin/")
