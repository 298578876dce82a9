"""Test helpers importable from any test module (``from support import …``).

Test modules must not ``import conftest``: with several conftest.py files on sys.path the
name is ambiguous.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the checkout (CI's layout), or ``BRIDGE_SHARED_DIR``."""
    candidates = [os.environ.get("BRIDGE_SHARED_DIR"), REPO_ROOT.parent / "shared", Path("/work/shared")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "fixtures").is_dir():
            return Path(candidate)
    raise RuntimeError("shared/fixtures not found: set BRIDGE_SHARED_DIR")


FIXTURES = shared_dir() / "fixtures"


def load_fixture(relative: str) -> dict[str, Any]:
    return json.loads((FIXTURES / relative).read_text())


class LiveServer:
    """The app served by a real threaded Werkzeug server on loopback."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
