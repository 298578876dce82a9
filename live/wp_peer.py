"""The wp-peer (``shared/peer/setup.sh``): its addresses and FluentCRM's REST API, shared by
``live/check_fluentcrm.py`` and ``bench/wpfusion.py``.

The peer writes every address and credential to ``/opt/wp-peer/env`` (shell ``KEY=value``
lines; ``PEER_ENV`` names another file). Contacts and tags made through :class:`FluentCrm` are
left in the peer's FluentCRM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests

PEER_ENV = Path(os.environ.get("PEER_ENV", "/opt/wp-peer/env"))


def read_peer_env(path: Path = PEER_ENV) -> dict[str, str] | None:
    """The peer's ``KEY=value`` lines, or None when the file is not there (no peer was set up)."""
    if not path.exists():
        return None
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value.strip().strip("'\"")
    return env


class FluentCrm:
    """The peer's FluentCRM REST API, used directly to set up and observe."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = env["A_REST"]
        self.session = requests.Session()
        self.session.auth = (env["A_APP_USER"], env["A_APP_PASSWORD"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=30, **kwargs)

    def by_email(self, email: str) -> dict[str, Any] | None:
        response = self.call("GET", "/subscribers/0", params={"get_by_email": email})
        return response.json().get("subscriber") if response.status_code == 200 else None

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        params = [("with[]", "tags"), ("with[]", "subscriber.custom_values")]
        response = self.call("GET", f"/subscribers/{contact_id}", params=params)
        return response.json().get("subscriber") if response.status_code == 200 else None

    def tags(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            listing = self.call("GET", "/tags", params={"per_page": 100, "page": page}).json()["tags"]
            found += listing["data"]
            if page >= int(listing.get("last_page") or 1):
                return found
            page += 1
