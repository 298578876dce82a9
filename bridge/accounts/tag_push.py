"""An administrator's change to a user's tags on one connection, pushed to that CRM.

``set_connection_tags`` makes the user's tag set for the connection exactly what the admin chose
and queues one ``tags.apply`` delivery (in the same transaction) carrying what was added and what
was removed; the handler applies both to the linked contact (found by email when the user is not
linked yet). With nothing changed nothing is queued. The worker owns retries, as for every push.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.accounts import users
from bridge.accounts.crm_push import build_adapter, require_enabled
from bridge.accounts.user_tags import replace_tags
from bridge.database import end_transaction
from bridge.delivery import outbox
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.delivery.jobs import JobContext, job_handler
from bridge.models import Connection, Delivery, User


def parse_tags(text: str) -> list[str]:
    """Tags typed as one comma- or line-separated string."""
    return list(dict.fromkeys(t.strip() for t in text.replace("\n", ",").split(",") if t.strip()))


def set_connection_tags(
    user: User, connection: Connection, tags: Iterable[str]
) -> tuple[list[str], list[str], Delivery | None]:
    """Replace the user's tags on ``connection`` and queue their push. Returns (added, removed,
    the delivery or None). Does not commit."""
    added, removed = replace_tags(user, connection, tags)
    if not added and not removed:
        return added, removed, None
    delivery = outbox.enqueue(
        outbox.TAGS_APPLY, connection=connection, user=user, payload={"add": added, "remove": removed}
    )
    return added, removed, delivery


@job_handler(outbox.TAGS_APPLY)
def push_tags(ctx: JobContext) -> dict[str, Any]:
    connection, user = require_enabled(ctx)
    payload = ctx.delivery.payload or {}
    add = [str(t) for t in payload.get("add") or []]
    remove = [str(t) for t in payload.get("remove") or []]
    adapter = build_adapter(connection, ctx)
    linked = users.contact_id_for(user, connection)
    end_transaction()  # no transaction (on SQLite: the write lock) while the CRM answers
    contact_id = linked or adapter.find_contact_id(user.email)
    if not contact_id:
        raise DeliveryAbandoned(f"{user.email} has no contact in {connection.name} yet: push the user first")
    if add:
        adapter.apply_tags(str(contact_id), add)
    if remove:
        adapter.remove_tags(str(contact_id), remove)
    return {"contact_id": str(contact_id), "tags_added": add, "tags_removed": remove}
