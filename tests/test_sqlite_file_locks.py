"""Opening a connection never drops the locks this process's other connections hold.

POSIX advisory locks belong to the process: closing *any* descriptor of the database file
releases them all (sqlite.org/howtocorrupt.html, 2.2). A connection that opened and closed the
file itself (to create it 0600) once let another process take it for the last user, checkpoint
and delete ``-wal`` and ``-shm`` under a running server, which then wrote to a deleted WAL and
never saw the other processes' rows again."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bridge.database import SerialisedWriterConnection


def test_a_new_connection_keeps_the_locks_another_process_relies_on(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite3"
    first = sqlite3.connect(path, factory=SerialisedWriterConnection)
    first.execute("PRAGMA journal_mode=WAL")
    first.execute("CREATE TABLE t (x)")
    first.execute("INSERT INTO t VALUES (1)")
    first.commit()
    first.execute("SELECT * FROM t").fetchall()  # this process keeps the database open

    second = sqlite3.connect(path, factory=SerialisedWriterConnection)  # another pool connection
    other = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT * FROM t').fetchall(); c.close()"
    subprocess.run([sys.executable, "-c", other, str(path)], check=True, timeout=60)

    assert (tmp_path / "bridge.sqlite3-wal").exists(), "another process took this one for gone and deleted the WAL"
    second.close()
    first.close()


def test_a_new_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    sqlite3.connect(path, factory=SerialisedWriterConnection).close()
    assert os.stat(path).st_mode & 0o777 == 0o600
