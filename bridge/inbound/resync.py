"""Resync one user from a CRM: the contact is loaded from the CRM and applied exactly as an
inbound ``update`` carrying it would be (fields, tags; tags loaded too when the contact came
without them), through the same ``process_contacts``. Used by the admin console's "Resync from CRM" button."""

from __future__ import annotations

from bridge.accounts import users
from bridge.database import end_transaction
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import ConnectionRuntime, InboundOutcome
from bridge.inbound.service import process_contacts
from bridge.models import Connection, User


class NoContact(LookupError):
    """The CRM has no contact for this user (not linked, and none with the user's email)."""


def resync_user(user: User, connection: Connection) -> InboundOutcome:
    """Load the user's contact from ``connection``'s CRM and apply it; commits. Raises
    ``NoContact``, the adapter's typed errors, or ``InboundRejected``."""
    runtime = ConnectionRuntime.prepare(connection)
    linked = users.contact_id_for(user, connection)
    end_transaction()  # the CRM answers with no transaction (on SQLite: the write lock) held
    contact_id = linked or runtime.adapter.find_contact_id(user.email)
    if not contact_id:
        raise NoContact(f"{connection.name} has no contact with the email {user.email}")
    # ``update`` loads only missing tags; a resync wants the contact's fields too.
    contact = runtime.adapter.load_contact(str(contact_id))
    return process_contacts(runtime, "update", [contact], InboundOptions())
