"""Typed failures shared by every adapter and the outbound HTTP client.

Adapters raise these; only the delivery layer decides what is retried, by looking at
``retryable`` (and ``retry_after``). Every error carries the CRM's status and a cut of its
answer so an operator can see what the CRM said without opening a debugger.
"""

from __future__ import annotations

RESPONSE_EXCERPT_CHARS = 2000


class AdapterError(Exception):
    """Base of every error an adapter or the HTTP client raises."""

    error_class: str = "adapter_error"
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.status = status
        self.body = body[:RESPONSE_EXCERPT_CHARS] if body else body
        self.retry_after = retry_after


# -- inbound ----------------------------------------------------------------------------------


class InvalidPayload(AdapterError):
    """The body could not be read as this CRM's format (bad JSON, bad form, wrong shape)."""

    error_class = "invalid_payload"


class MissingContactId(AdapterError):
    """Neither the query string nor the body names a contact."""

    error_class = "missing_contact_id"


class InvalidSignature(AdapterError):
    """The connection verifies signatures and this request's is missing or wrong."""

    error_class = "invalid_signature"


# -- CRM API ----------------------------------------------------------------------------------


class CrmError(AdapterError):
    """The CRM answered, or failed to answer, in a way that stops this operation."""

    error_class = "crm_error"


class CrmUnavailable(CrmError):
    """Timeouts, refused connections, 5xx, 408, 425: the CRM may work again later."""

    error_class = "crm_unavailable"
    retryable = True


class RateLimited(CrmUnavailable):
    """429. ``retry_after`` holds the CRM's ``Retry-After`` in seconds when it sent one."""

    error_class = "rate_limited"
    retryable = True


class AuthRefused(CrmError):
    """401/403: the credentials are wrong; retrying will not help until someone fixes them."""

    error_class = "auth_refused"


class ContactNotFound(CrmError):
    """The CRM has no contact with that id or email."""

    error_class = "contact_not_found"


class DuplicateContact(CrmError):
    """The CRM refused to create a contact because one with that email exists."""

    error_class = "duplicate_contact"


class CrmRejected(CrmError):
    """Any other 4xx, or a 3xx (redirects are never followed): final for this payload."""

    error_class = "crm_rejected"


class ListingNotSupported(CrmError):
    """The CRM (or this adapter) has no API to list contacts, so it cannot be imported from or
    resynced in bulk: final, and the message says so."""

    error_class = "listing_not_supported"


class PayloadTooLarge(CrmError):
    """The request body we would send is over the connection's limit: final."""

    error_class = "payload_too_large"


# -- transport (raised by the HTTP client) ----------------------------------------------------


class TransportError(CrmUnavailable):
    """The request did not get an HTTP answer."""

    error_class = "connection_error"


class TransportTimeout(TransportError):
    error_class = "timeout"


class ResponseTooLarge(TransportError):
    error_class = "response_too_large"


class OutboundDenied(CrmError):
    """The outbound policy refused the target before any packet left: final."""

    error_class = "outbound_denied"
