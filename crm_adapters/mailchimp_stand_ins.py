"""Mailchimp's answers as a dry run stands them in (nothing is sent), shaped after the Marketing
API's list members (https://mailchimp.com/developer/marketing/api/list-members/, as recorded in
``tests/fixtures/mailchimp/member_email_changed.json``) and member tags
(https://mailchimp.com/developer/marketing/api/list-member-tags/), so a registration shows what
Mailchimp would answer each call:

- ``PUT lists/{list}/members/{md5}``: 200, the member (``id`` is the MD5 in the path, as for a
  real member, ``status`` ``subscribed`` from ``status_if_new``, the ``merge_fields`` sent);
- ``POST lists/{list}/members/{md5}/tags``: 204 without a body (Mailchimp creates missing tags).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from crm_adapters.parsing import json_object

NO_CONTENT = (204, None)


def answer(method: str, url: str, body: str) -> tuple[int, Any] | None:
    parts = urlsplit(url).path.rstrip("/").split("/")
    if method == "POST" and parts[-1] == "tags" and "members" in parts:
        return NO_CONTENT
    if method == "PUT" and len(parts) >= 4 and parts[-2] == "members" and parts[-4] == "lists":
        sent = json_object(body)
        merges = sent.get("merge_fields") if isinstance(sent.get("merge_fields"), dict) else {}
        names = " ".join(str(merges.get(tag) or "") for tag in ("FNAME", "LNAME")).strip()
        return 200, {
            "id": parts[-1],
            "email_address": str(sent.get("email_address") or ""),
            "full_name": names,
            "email_type": "html",
            "status": str(sent.get("status") or sent.get("status_if_new") or "subscribed"),
            "merge_fields": merges,
            "list_id": parts[-3],
        }
    return None
