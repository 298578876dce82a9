"""This project's own recorded and documented CRM answers (``tests/fixtures/<crm>/``), beside the
shared ones (``support.FIXTURES``). Every file carries a ``note`` naming its source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOCAL_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def recorded(relative: str) -> dict[str, Any]:
    data = json.loads((LOCAL_FIXTURES / relative).read_text())
    assert data.get("note"), f"{relative} names its source in a note"
    return data
