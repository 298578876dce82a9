"""CRM activity: events a CRM posts to ``/webhooks/crm/lead`` (CONTRACT.md §6).

The rules live here, not in the view, so a CLI command or a test can record activity without a
request: which secret guards the endpoint, what a valid body is, which local user is "the lead",
and that an activity is stored whole or not at all.

The secret is never logged or echoed: failures say only *that* it was missing or wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bridge import crypto
from bridge.accounts.users import user_for_any_contact
from bridge.extensions import db
from bridge.models import CrmActivity
from crm_adapters.untrusted import UntrustedJsonError, loads_untrusted, unstorable

log = logging.getLogger(__name__)

DEFAULT_EVENT_TYPE = "updated"
EVENT_TYPE_MAX_CHARS = 128  # the column's width
NO_MATCH_REASON = "No matching lead or submission for crm_lead_id"


class ActivityError(Exception):
    """A request the activity webhook refuses; ``status`` and ``code`` are what it answers."""

    status = 400
    code = "invalid_payload"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActivityNotConfigured(ActivityError):
    """Neither ``CRM_WEBHOOK_SECRET`` nor ``CRM_CALLBACK_SECRET`` is set: the endpoint is off."""

    status = 503
    code = "not_configured"


class ActivityUnauthorised(ActivityError):
    status = 401
    code = "unauthorized"


class InvalidActivity(ActivityError):
    status = 400
    code = "invalid_payload"


class MissingLeadId(InvalidActivity):
    code = "missing_crm_lead_id"


class ActivityStoreFailed(ActivityError):
    """The database failed while storing; the transaction was rolled back."""

    status = 500
    code = "storage_failed"


@dataclass(frozen=True)
class LeadActivity:
    """A validated activity body: the CRM's contact id, the event type and the whole body."""

    contact_id: str
    event_type: str
    payload: dict[str, Any]


# -- authentication ---------------------------------------------------------------------------


def configured_secret(config: Mapping[str, Any]) -> str | None:
    """``CRM_WEBHOOK_SECRET`` if set, else ``CRM_CALLBACK_SECRET`` (both may come from the
    environment or ``instance/config.py``)."""
    return config.get("CRM_WEBHOOK_SECRET") or config.get("CRM_CALLBACK_SECRET") or None


def presented_secret(headers: Mapping[str, str]) -> str | None:
    """The secret a request carries: ``Authorization: Bearer SECRET`` or ``X-API-Key: SECRET``."""
    authorization = headers.get("Authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = (headers.get("X-API-Key") or "").strip()
    return api_key or None


def authenticate(headers: Mapping[str, str], config: Mapping[str, Any]) -> None:
    """Raise unless the request carries the configured secret (compared in constant time)."""
    expected = configured_secret(config)
    if not expected:
        raise ActivityNotConfigured("the CRM activity webhook has no secret configured")
    if not crypto.same_secret(presented_secret(headers), expected):
        raise ActivityUnauthorised("a valid secret is required (Authorization: Bearer SECRET or X-API-Key)")


# -- the body ---------------------------------------------------------------------------------


def parse_activity(raw: bytes | str) -> LeadActivity:
    """Validate a request body. ``crm_lead_id`` must be a non-empty string: CRMs that send a
    number are told so rather than having it guessed, since ids are matched as strings. JSON that
    no database can store (nested too deep, NUL, lone surrogates, NaN) is refused as invalid."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        body = loads_untrusted(text or "")
    except (UnicodeDecodeError, UntrustedJsonError):
        raise InvalidActivity("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidActivity("the body must be a JSON object")
    contact_id = body.get("crm_lead_id")
    if contact_id is None:
        raise MissingLeadId("crm_lead_id is required")
    if not isinstance(contact_id, str) or not contact_id.strip() or unstorable(contact_id):
        raise MissingLeadId("crm_lead_id must be a non-empty string")
    event_type = body.get("event_type")
    if event_type in (None, ""):
        event_type = DEFAULT_EVENT_TYPE
    if not isinstance(event_type, str):
        raise InvalidActivity("event_type must be a string")
    return LeadActivity(
        contact_id=contact_id.strip(),
        event_type=event_type.strip()[:EVENT_TYPE_MAX_CHARS] or DEFAULT_EVENT_TYPE,
        payload=body,
    )


# -- storing ----------------------------------------------------------------------------------


def record_activity(activity: LeadActivity) -> CrmActivity | None:
    """Store the activity on its lead and commit; None when no local user has (or had) that
    contact id (logged, not stored: the CRM gets a 200 so it does not retry forever).

    The lead is found by ``users.user_for_any_contact``: the current link first, then the most
    recent earlier one. Any database failure rolls the whole transaction back and raises
    ``ActivityStoreFailed``, so nothing is half-written.
    """
    try:
        user = user_for_any_contact(activity.contact_id)
        if user is None:
            db.session.rollback()
            log.info(
                "CRM activity %r for contact %r not stored: no matching lead",
                activity.event_type,
                activity.contact_id,
            )
            return None
        row = CrmActivity(
            user_id=user.id,
            contact_id=activity.contact_id,
            event_type=activity.event_type,
            payload=activity.payload,
            source="crm",
        )
        db.session.add(row)
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.error("CRM activity for contact %r not stored: %s", activity.contact_id, type(exc).__name__)
        raise ActivityStoreFailed("the activity could not be stored; retry later") from exc
    return row
