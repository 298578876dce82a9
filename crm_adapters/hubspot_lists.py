"""HubSpot contact lists as tags: HubSpot has none, so, as WP Fusion does, the contact lists
that take memberships (``MANUAL`` and ``SNAPSHOT``) serve as tags
(https://developers.hubspot.com/docs/api/crm/lists; WP Fusion 3.47.11 ``WPF_HubSpot::sync_tags_v3``).

``POST /crm/v3/lists/search`` reads every list, since list names are unique portal-wide: a tag
named like an active (``DYNAMIC``) list or another object's list is refused with a message that
says so. A missing list is created (``POST /crm/v3/lists``; ``add_tag``, which also re-reads the
lists when the name was taken meanwhile). A contact's tags follow ``paging.next.after`` through
every page of ``GET /crm/v3/lists/records/0-1/{id}/memberships`` (``get_tags``); memberships are
changed with ``PUT /crm/v3/lists/{id}/memberships/add|remove`` (``apply_tags``/``remove_tags``).

Kept apart from the adapter (``crm_adapters.hubspot``), which owns the contacts, the webhooks and
the HTTP plumbing and hands this module its authenticated request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crm_adapters.errors import CrmRejected
from crm_adapters.hubspot_types import CONTACT_OBJECT_TYPE, is_tag_list, named, unusable_list
from crm_adapters.parsing import stringify_id

PAGE_SIZE = 100
MEMBERSHIPS_PAGE_SIZE = 500  # as WP Fusion's get_tags asks

# The adapter's request: (method, path, **requests-style keywords) → the decoded JSON answer.
Request = Callable[..., Any]


class HubSpotLists:
    """The portal's contact lists, read and changed through the adapter's ``request``."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def every_list(self) -> list[Mapping[str, Any]]:
        """Every list of the portal, whatever its object or processing type: list names are
        unique portal-wide, so a tag's name may be taken by a list that cannot be a tag."""
        found: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            data = self._request(
                "POST", "/crm/v3/lists/search", json={"query": "", "offset": offset, "count": PAGE_SIZE}
            )
            page = [item for item in data.get("lists") or [] if isinstance(item, Mapping)]
            found.extend(page)
            if not data.get("hasMore") or not page:
                return found
            offset = int(data.get("offset") or offset + len(page))

    def tag_lists(self) -> list[Mapping[str, Any]]:
        """Contact lists that take memberships over the API (``MANUAL`` and ``SNAPSHOT``, as
        WP Fusion's ``sync_tags_v3`` counts them): those are tags."""
        return [item for item in self.every_list() if is_tag_list(item)]

    def tags_of(self, contact_id: str) -> list[str]:
        """Every page of the contact's memberships (``paging.next.after``, as WP Fusion's
        ``get_tags``): an unread page would make the inbound tag replacement drop its tags."""
        ids: list[str | None] = []
        params: dict[str, Any] = {"limit": MEMBERSHIPS_PAGE_SIZE}
        path = f"/crm/v3/lists/records/{CONTACT_OBJECT_TYPE}/{contact_id}/memberships"
        while True:
            data = self._request("GET", path, params=params)
            ids.extend(stringify_id(m.get("listId")) for m in data.get("results") or [] if isinstance(m, Mapping))
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
            params = {"limit": MEMBERSHIPS_PAGE_SIZE, "after": after}
        if not ids:
            return []
        names = {stringify_id(item.get("listId")): str(item.get("name")) for item in self.tag_lists()}
        return [names[list_id] for list_id in ids if list_id in names]

    def ids(self, names: Sequence[str], *, create_missing: bool) -> list[str]:
        """The list ids of tags ``names``, in order and once each. A name taken by a list that
        cannot be a tag is refused when applying (``CrmRejected``) and skipped when removing:
        such a membership was never applied through the API."""
        lists = self.every_list()
        ids: list[str] = []
        for name in names:
            found = named(lists, name)
            if found is not None and not is_tag_list(found):
                if not create_missing:
                    continue  # never applied through the API, so nothing to remove
                raise CrmRejected(unusable_list(name, found))
            list_id = stringify_id(found.get("listId")) if found is not None else None
            if list_id is None and create_missing:
                list_id = self._create(name)
            if list_id and list_id not in ids:
                ids.append(list_id)
        return ids

    def _create(self, name: str) -> str | None:
        """A new static list named ``name``. When the name was taken meanwhile (another push
        created it), the list is read again and the existing one used, as WP Fusion's
        ``add_tag`` does."""
        try:
            created = self._request(
                "POST",
                "/crm/v3/lists",
                json={"name": name, "objectTypeId": CONTACT_OBJECT_TYPE, "processingType": "MANUAL"},
            )
        except CrmRejected:
            found = named(self.every_list(), name)
            if found is None:
                raise
            if not is_tag_list(found):
                raise CrmRejected(unusable_list(name, found)) from None
            return stringify_id(found.get("listId"))
        return stringify_id((created.get("list") or {}).get("listId"))

    def add(self, contact_id: str, tags: Sequence[str]) -> None:
        """Make the contact a member of each tag's list, creating missing lists."""
        for list_id in self.ids(tags, create_missing=True):
            self._request("PUT", f"/crm/v3/lists/{list_id}/memberships/add", json=[contact_id])

    def remove(self, contact_id: str, tags: Sequence[str]) -> None:
        for list_id in self.ids(tags, create_missing=False):
            self._request("PUT", f"/crm/v3/lists/{list_id}/memberships/remove", json=[contact_id])
