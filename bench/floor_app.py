"""The floor of the inbound ``update`` bench: a minimal Flask app doing the same work by hand.

Not part of the product. ``bench/inbound.py`` serves it with the same gunicorn settings as the
app and drives it with the same wrk script, so ``update / floor`` says how close the app's
``update`` comes to what Flask plus the database cost on this machine, with nothing of
crm-bridge in between. Per request, as the app's hot path does: parse the JSON body, read the
user linked to the contact with its tags (one statement), update the changed columns, write
the tag difference, insert an inbound log row, commit. Raw ``sqlite3`` or raw psycopg, one
connection per thread. No key cache, redaction, adapter or validation: only the statements.

    gunicorn -w 2 'floor_app:create_floor_app()'   # with DATABASE_URL and FLOOR_ACCESS_KEY set
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request

SELECT_USER = (
    "SELECT u.id, u.first_name, u.last_name, t.name FROM contact_link c "
    "JOIN user_account u ON u.id = c.user_id "
    "LEFT JOIN user_tag t ON t.user_id = u.id AND t.connection_id = c.connection_id "
    "WHERE c.connection_id = {p} AND c.contact_id = {p} AND c.unlinked_at IS NULL ORDER BY t.id"
)
UPDATE_USER = "UPDATE user_account SET first_name = {p}, last_name = {p}, updated_at = {p} WHERE id = {p}"
DELETE_TAG = "DELETE FROM user_tag WHERE user_id = {p} AND connection_id = {p} AND name = {p}"
INSERT_TAG = "INSERT INTO user_tag (user_id, connection_id, name, created_at) VALUES ({p}, {p}, {p}, {p})"
INSERT_EVENT = (
    "INSERT INTO webhook_event (connection_id, connection_name, action, contact_id, user_id, method, path, "
    "status_code, outcome, duration_ms, source_ip, payload, received_at) "
    "VALUES ({p}, 'fluent', 'update', {p}, {p}, 'POST', '/?wpf_action=update', 200, 'updated', 0, {p}, {p}, {p})"
)


def _connect(url: str) -> tuple[Any, str, bool]:
    """(connection, placeholder, is_sqlite) for a SQLAlchemy-style URL."""
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.split("///", 1)[1], isolation_level=None, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection, "?", True
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)), "%s", False


def create_floor_app() -> Flask:
    url = os.environ["DATABASE_URL"]
    key = os.environ["FLOOR_ACCESS_KEY"]
    connection_id = int(os.environ.get("FLOOR_CONNECTION_ID", "1"))
    local = threading.local()
    app = Flask(__name__)

    def connection() -> tuple[Any, dict[str, str], bool]:
        if getattr(local, "conn", None) is None:
            local.conn, placeholder, local.sqlite = _connect(url)
            local.sql = {
                name: sql.format(p=placeholder)
                for name, sql in (
                    ("select", SELECT_USER),
                    ("update", UPDATE_USER),
                    ("delete", DELETE_TAG),
                    ("insert", INSERT_TAG),
                    ("event", INSERT_EVENT),
                )
            }
        return local.conn, local.sql, local.sqlite

    @app.post("/")
    def update() -> Response:
        if request.args.get("access_key") != key:
            return Response('{"success": false}', 403, mimetype="application/json")
        raw = request.get_data()
        data = json.loads(raw)
        contact_id = str(data["id"])
        tags = list(dict.fromkeys(t["slug"] for t in data.get("tags") or []))
        conn, sql, sqlite = connection()
        for _attempt in range(5):  # a concurrent update of the same user: run again, as the app does
            try:
                return _apply(conn, sql, sqlite, data, contact_id, tags, raw)
            except Exception:
                conn.rollback()
        raise RuntimeError("five races in a row")

    def _apply(
        conn: Any, sql: dict[str, str], sqlite: bool, data: Any, contact_id: str, tags: list, raw: bytes
    ) -> Response:
        now = datetime.now(UTC).replace(tzinfo=None)
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now
        cursor = conn.cursor()
        if sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        rows = cursor.execute(sql["select"], (connection_id, contact_id)).fetchall()
        if not rows:
            conn.rollback()
            return Response('{"success": true, "matched": false}', mimetype="application/json")
        user_id, first, last = rows[0][0], rows[0][1], rows[0][2]
        current = [row[3] for row in rows if row[3] is not None]
        if (first, last) != (data.get("first_name"), data.get("last_name")):
            cursor.execute(sql["update"], (data.get("first_name"), data.get("last_name"), stamp, user_id))
        for name in current:
            if name not in tags:
                cursor.execute(sql["delete"], (user_id, connection_id, name))
        added = [name for name in tags if name not in current]
        if added:
            cursor.executemany(sql["insert"], [(user_id, connection_id, name, stamp) for name in added])
        cursor.execute(
            sql["event"], (connection_id, contact_id, user_id, request.remote_addr, raw.decode("utf-8"), stamp)
        )
        conn.commit()
        body = {"success": True, "action": "update", "user_id": user_id, "tags": tags, "tags_added": added}
        return Response(json.dumps(body), mimetype="application/json")

    return app
