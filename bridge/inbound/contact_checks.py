"""What a parsed inbound contact must look like before any rule touches it (CONTRACT.md §3).

Adapters read whatever the CRM sent; here the result is held to what the rest of crm-bridge can
store and use safely: an email that is one address (no CR/LF that would later inject mail
headers, no NUL, at most 254 characters, one ``@``), a contact id that fits its column and holds
no control characters, and at most :data:`MAX_TAGS` tags of storable length. A contact that fails
is the whole request's ``invalid_payload`` (400): nothing is written but the log row. Linear in
the contact's size and free of queries, so the hot path pays microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from crm_adapters.base import Contact
from crm_adapters.errors import InvalidPayload

MAX_EMAIL_CHARS = 254  # RFC 5321's path limit
MAX_CONTACT_ID_CHARS = 191  # the contact_link column
MAX_TAG_CHARS = 191  # the user_tag column
MAX_TAGS = 1_000
# local@domain: no whitespace, control characters, or the characters that delimit addresses.
_ADDRESS_PART = r"[^@\s\x00-\x1f\x7f<>()\[\],;:\"\\]+"
_EMAIL = re.compile(rf"{_ADDRESS_PART}@{_ADDRESS_PART}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_contacts(contacts: Iterable[Contact]) -> None:
    """Raise :class:`InvalidPayload` for the first contact that cannot be stored safely."""
    for contact in contacts:
        check_contact(contact)


def check_contact(contact: Contact) -> None:
    email, contact_id, tags = contact.email, contact.contact_id, contact.tags
    if email is not None and (len(email) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(email)):
        raise InvalidPayload("the contact's email is not a valid email address")
    if contact_id is not None and (len(contact_id) > MAX_CONTACT_ID_CHARS or _CONTROL.search(contact_id)):
        raise InvalidPayload(f"the contact id must be a string or number of at most {MAX_CONTACT_ID_CHARS} characters")
    if tags is not None:
        if len(tags) > MAX_TAGS:
            raise InvalidPayload(f"a contact may carry at most {MAX_TAGS} tags")
        if any(len(tag) > MAX_TAG_CHARS or "\x00" in tag for tag in tags):
            raise InvalidPayload(f"tags must be at most {MAX_TAG_CHARS} characters long")
