"""The app under a real gunicorn (sync workers) on an ephemeral loopback port, for tests about
the server itself: worker timeouts, gunicorn's own error answers, its access log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class Gunicorn:
    """``with Gunicorn(database_url, instance, tmp) as server:`` then ``server.url``; the
    access log is ``server.access_log``. Started from the repository (its gunicorn.conf.py)."""

    def __init__(
        self, database_url: str, instance: Path, workdir: Path, *, workers: int = 2, timeout: int = 20
    ) -> None:
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        self.args = [
            str(Path(sys.executable).with_name("gunicorn")),
            *("-w", str(workers), "-b", "127.0.0.1:0", "--timeout", str(timeout)),
            *("--access-logfile", str(self.access_log), "--error-logfile", str(self.error_log)),
            "app:create_app()",
        ]
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "BRIDGE_INSTANCE_PATH": str(instance),
            "SECRET_KEY": "test-secret-key-not-for-production",
            "BRIDGE_WORKER": "off",
        }
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        self.process = subprocess.Popen(self.args, cwd=REPO, env=self.env)
        deadline = time.monotonic() + 30
        while not self.url:
            text = self.error_log.read_text() if self.error_log.exists() else ""
            if (match := _LISTENING.search(text)) and "Booting worker" in text:
                self.url = f"http://127.0.0.1:{match.group(1)}"
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start:\n" + text)
            else:
                time.sleep(0.05)
        self._wait_until_serving(deadline + 30)
        return self

    def _wait_until_serving(self, deadline: float) -> None:
        """Workers load the app on their first request: wait for one answer (a loaded machine
        takes seconds to import the app)."""
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=30) as response:
                    if response.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)

    def log_text(self, needle: str, timeout: float = 10.0) -> str:
        """The access log once it holds ``needle`` (gunicorn writes it after the response)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)
