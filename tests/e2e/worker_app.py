"""``flask --app tests/e2e/worker_app.py bridge worker``: the production app (``app.py``) with
type ``fluentcrm`` able to push (see ``fakecrm.install_outbound_adapter``), for worker
processes started by the end-to-end tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakecrm import install_outbound_adapter

from bridge import create_app

install_outbound_adapter()
app = create_app()
