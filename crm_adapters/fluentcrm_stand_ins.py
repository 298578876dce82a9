"""FluentCRM's answers as a dry run stands them in (nothing is sent): the shapes of the recorded
exchanges in ``shared/fixtures/fluentcrm/api/`` (``create_subscriber``, ``list_tags``,
``create_tag_new``, ``sync_segments_attach_slug``, ``get_by_email_missing``), so the adapter goes
through a registration exactly as it would against FluentCRM: a new contact is created, the
connection's tags are created and attached."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from crm_adapters.parsing import json_object

STAND_IN_ID = 1  # the id a stand-in contact or tag gets: shown in the dry run, never stored


def answer(method: str, url: str, body: str) -> tuple[int, Any] | None:
    path = urlsplit(url).path.rstrip("/")
    sent = json_object(body)
    if method == "POST" and path.endswith("/subscribers"):  # create_subscriber.json
        contact = {key: sent.get(key) for key in ("email", "first_name", "last_name", "status")}
        return 200, {
            "message": "Successfully added the subscriber.",
            "contact": {"id": STAND_IN_ID, **contact},
            "action_type": "created",
        }
    if method == "GET" and path.endswith("/subscribers/0"):  # get_by_email_missing.json
        return 422, {"message": "Subscriber not found"}
    if method == "GET" and path.endswith("/tags"):  # list_tags.json, with no tags yet
        return 200, {"tags": {"total": 0, "per_page": 100, "current_page": 1, "last_page": 1, "data": []}}
    if method == "POST" and path.endswith("/tags"):  # create_tag_new.json
        title = str(sent.get("title") or "")
        tag = {"title": title, "slug": title.lower().replace(" ", "-"), "id": STAND_IN_ID}
        return 200, {"lists": tag, "item": tag, "message": "Successfully saved the tag."}
    if method == "POST" and path.endswith("/subscribers/sync-segments"):  # sync_segments_attach_slug.json
        return 200, {"message": "Successfully updated the subscriber.", "subscribers": [{"id": STAND_IN_ID}]}
    return None
