"""Welcome mail and its delivery. Stub: issue 7 implements rendering and sending.

``queue_welcome`` is the producer side (used by the inbound ``add``): it writes a
``mail.welcome`` outbox row in the caller's transaction, so a mail server that is down never
fails a webhook.
"""

from __future__ import annotations

from bridge import outbox
from bridge.models import Connection, User


def queue_welcome(user: User, connection: Connection | None = None) -> None:
    """Queue the welcome mail for ``user`` (sent by the worker)."""
    outbox.enqueue(
        outbox.MAIL_WELCOME,
        user=user,
        connection=connection,
        payload={"user_id": user.id},
        ordering=f"mail:{user.id}",  # never queued behind a CRM push that is failing
    )
