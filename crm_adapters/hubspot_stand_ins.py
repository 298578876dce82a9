"""HubSpot's answers as a dry run stands them in (nothing is sent), shaped after the CRM v3 API
(contacts: https://developers.hubspot.com/docs/api/crm/contacts; lists:
https://developers.hubspot.com/docs/api/crm/lists, as recorded in
``tests/fixtures/hubspot/lists_search_all_types.json``), so a registration goes through every call
it makes against a portal that does not know the person yet:

- ``GET …/contacts/{email}?idProperty=email``: 404 ``OBJECT_NOT_FOUND`` (a new person);
- ``POST …/contacts``: 201, the new contact (``id``, its ``properties`` with HubSpot's own);
- ``POST /crm/v3/lists/search``: no lists yet, so each tag's list is created;
- ``POST /crm/v3/lists``: the new ``MANUAL`` contact list, a new ``listId`` each;
- ``PUT /crm/v3/lists/{id}/memberships/add``: the contact was added.

Ids are stand-ins (``1`` for the contact, ``101`` … for lists): shown in the dry run, never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crm_adapters.parsing import json_object

CONTACTS = "/crm/v3/objects/contacts"
CONTACT_ID = "1"
FIRST_LIST_ID = 101
STAND_IN_TIME = "2026-01-01T00:00:00.000Z"
NOT_FOUND = {
    "status": "error",
    "message": "resource not found",
    "correlationId": "00000000-0000-0000-0000-000000000000",
    "category": "OBJECT_NOT_FOUND",
}


@dataclass
class HubSpotStandIns:
    """One dry run's answers: lists created during it get ids of their own, as in HubSpot."""

    next_list_id: int = FIRST_LIST_ID

    def answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        path = urlsplit(url).path.rstrip("/")
        if method == "GET" and path.startswith(CONTACTS + "/"):
            return 404, NOT_FOUND
        if method == "POST" and path.endswith(CONTACTS):
            return 201, new_contact(json_object(body).get("properties"))
        if method == "POST" and path.endswith("/crm/v3/lists/search"):
            return 200, {"lists": [], "hasMore": False, "offset": 0, "total": 0}
        if method == "POST" and path.endswith("/crm/v3/lists"):
            return 200, {"list": self.new_list(json_object(body))}
        if method == "PUT" and path.endswith("/memberships/add"):
            return 200, {"recordIdsAdded": _record_ids(body), "recordIdsMissing": []}
        return None

    def new_list(self, sent: dict[str, Any]) -> dict[str, Any]:
        list_id, self.next_list_id = str(self.next_list_id), self.next_list_id + 1
        return {
            "listId": list_id,
            "listVersion": 1,
            "name": str(sent.get("name") or ""),
            "objectTypeId": str(sent.get("objectTypeId") or "0-1"),
            "processingType": str(sent.get("processingType") or "MANUAL"),
            "processingStatus": "COMPLETE",
            "createdAt": STAND_IN_TIME,
            "updatedAt": STAND_IN_TIME,
        }


def new_contact(properties: Any) -> dict[str, Any]:
    sent = dict(properties) if isinstance(properties, dict) else {}
    own = {"createdate": STAND_IN_TIME, "hs_object_id": CONTACT_ID, "lastmodifieddate": STAND_IN_TIME}
    return {
        "id": CONTACT_ID,
        "properties": {**sent, **own},
        "createdAt": STAND_IN_TIME,
        "updatedAt": STAND_IN_TIME,
        "archived": False,
    }


def _record_ids(body: str) -> list[str]:
    try:
        sent = json.loads(body or "[]")
    except ValueError:
        return []
    return [str(record_id) for record_id in sent] if isinstance(sent, list) else []
