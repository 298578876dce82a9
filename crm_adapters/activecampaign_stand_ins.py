"""ActiveCampaign's answers as a dry run stands them in (nothing is sent), shaped after the API v3
reference (https://developers.activecampaign.com/reference: "Sync a contact's data", "Create a
tag", "Add a tag to contact") and the recorded listings in ``tests/fixtures/activecampaign``, so
a registration goes through every call it makes against an account that has neither the person
nor the connection's tags yet:

- ``POST contact/sync``: 201, ``{"fieldValues": [...], "contact": {..., "id"}}`` (a new contact);
- ``GET tags?search=``: no tag of that name (``{"tags": [], "meta": {"total": "0"}}``);
- ``POST tags``: 201, the new tag, an id of its own each;
- ``POST contactTags``: 201, the link of the contact to the tag;
- ``GET fields``: no custom fields (the account's own are unknown to a dry run).

Ids are stand-ins (``1`` for the contact, ``101`` … for tags): shown in the dry run, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crm_adapters.parsing import json_object

CONTACT_ID = "1"
FIRST_TAG_ID = 101
STAND_IN_TIME = "2026-01-01T00:00:00-06:00"
EMPTY_LISTING = {"meta": {"total": "0"}}


@dataclass
class ActiveCampaignStandIns:
    """One dry run's answers: tags created during it get ids of their own, as in ActiveCampaign."""

    next_tag_id: int = FIRST_TAG_ID
    next_link_id: int = 1

    def answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        path = urlsplit(url).path.rstrip("/")
        sent = json_object(body)
        if method == "POST" and path.endswith("/contact/sync"):
            return 201, {"fieldValues": [], "contact": new_contact(sent.get("contact"))}
        if method == "GET" and path.endswith(("/tags", "/fields")):
            return 200, {path.rsplit("/", 1)[1]: [], **EMPTY_LISTING}
        if method == "POST" and path.endswith("/tags"):
            return 201, {"tag": self.new_tag(sent.get("tag"))}
        if method == "POST" and path.endswith("/contactTags"):
            return 201, {"contactTag": self.new_link(sent.get("contactTag"))}
        return None

    def new_tag(self, sent: Any) -> dict[str, Any]:
        tag = dict(sent) if isinstance(sent, dict) else {}
        tag_id, self.next_tag_id = str(self.next_tag_id), self.next_tag_id + 1
        return {
            "tag": str(tag.get("tag") or ""),
            "description": str(tag.get("description") or ""),
            "tagType": str(tag.get("tagType") or "contact"),
            "cdate": STAND_IN_TIME,
            "id": tag_id,
        }

    def new_link(self, sent: Any) -> dict[str, Any]:
        link = dict(sent) if isinstance(sent, dict) else {}
        link_id, self.next_link_id = str(self.next_link_id), self.next_link_id + 1
        return {"contact": str(link.get("contact")), "tag": str(link.get("tag")), "cdate": STAND_IN_TIME, "id": link_id}


def new_contact(sent: Any) -> dict[str, Any]:
    contact = dict(sent) if isinstance(sent, dict) else {}
    contact.pop("fieldValues", None)
    return {**contact, "cdate": STAND_IN_TIME, "udate": STAND_IN_TIME, "orgid": "0", "id": CONTACT_ID}
