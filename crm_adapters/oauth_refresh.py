"""The OAuth 2 refresh grant for adapters whose access tokens expire (PulseTechnologyCRM,
Mautic): on a refused token, trade the connection's ``refresh_token`` (with ``client_id`` and
``client_secret``) for new tokens at the CRM's token URL, once (RFC 6749 §6,
https://datatracker.ietf.org/doc/html/rfc6749#section-6), and hand them to the host through
``settings_to_store`` so they are stored on the connection.

Mixed into an :class:`~crm_adapters.base.Adapter` subclass, which sets ``token_url`` and may add
form fields its CRM wants (``refresh_form_extra``). Redemption goes through
``Adapter.redeem_refresh_token``: once per process and, with the host's guard, once across
processes for everyone presenting the same refresh token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_adapters.errors import CrmRejected

REFRESH_SETTINGS = ("refresh_token", "client_id", "client_secret")


class OAuthRefreshMixin:
    """``refresh_access_token()`` and ``settings_to_store()`` for a refreshing adapter."""

    refreshed_tokens: dict[str, str] | None = None
    config: dict[str, Any]

    @property
    def token_url(self) -> str:
        raise NotImplementedError

    def refresh_form_extra(self) -> dict[str, str]:
        """Extra form fields of the CRM's refresh request (Mautic's ``redirect_uri``)."""
        return {}

    def settings_to_store(self) -> dict[str, Any]:
        return dict(self.refreshed_tokens or {})

    def can_refresh(self) -> bool:
        return self.refreshed_tokens is None and all(self.setting(n) for n in REFRESH_SETTINGS)  # type: ignore[attr-defined]

    def refresh_access_token(self) -> bool:
        """Refresh once per adapter; False when the connection has no refresh credentials or
        the grant gave no access token (the caller then raises the original refusal)."""
        if not self.can_refresh():
            return False
        tokens = self.redeem_refresh_token(  # type: ignore[attr-defined]
            token_url=self.token_url,
            client_id=str(self.setting("client_id")),  # type: ignore[attr-defined]
            refresh_token=str(self.setting("refresh_token")),  # type: ignore[attr-defined]
            grant=self._refresh_grant,
        )
        if not tokens:
            return False
        self.refreshed_tokens = tokens
        self.config.update(tokens)
        return True

    def _refresh_grant(self) -> dict[str, str] | None:
        form = {"grant_type": "refresh_token", **{n: str(self.setting(n)) for n in REFRESH_SETTINGS}}  # type: ignore[attr-defined]
        try:
            response = self.call(  # type: ignore[attr-defined]
                "POST",
                self.token_url,
                data={**form, **self.refresh_form_extra()},
                headers={"Accept": "application/json"},
            )
        except CrmRejected as exc:
            if exc.status == 400:  # RFC 6749 §5.2: invalid_grant and the like: the refusal stands
                return None
            raise
        data = response.json()
        token = data.get("access_token") if isinstance(data, Mapping) else None
        if not token:
            return None
        tokens = {"access_token": str(token)}
        if data.get("refresh_token"):
            tokens["refresh_token"] = str(data["refresh_token"])
        return tokens
