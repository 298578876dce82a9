"""Fixtures for the outbound area: a small CRM adapter for ``responses`` mocks, job kinds
whose behaviour a test controls, and helpers to queue rows and run a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest
from support import ECHO_CRM as CRM

from bridge.delivery import jobs, outbox
from bridge.extensions import db
from crm_adapters.base import Adapter, OutboundContact, Setting


class EchoCrmAdapter(Adapter):
    """A minimal JSON CRM: ``POST /contacts`` upserts by email, ``PUT /contacts/ID`` sets
    fields, ``POST /contacts/ID/tags`` applies tags. Statuses go through ``Adapter.call``."""

    type: ClassVar[str] = "echocrm"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "URL", required=True, kind="url"),
        Setting("api_key", "API key", required=True, secret=True),
    ]

    def _headers(self) -> dict[str, str]:
        return {"X-Api-Key": str(self.setting("api_key"))}

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        body = {"email": contact.email, **contact.fields, "event": contact.event.type if contact.event else None}
        data = self.call("POST", f"{self.setting('base_url')}/contacts", json=body, headers=self._headers()).json()
        return str(data["id"])

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        self.call(
            "PUT", f"{self.setting('base_url')}/contacts/{contact_id}", json=dict(fields), headers=self._headers()
        )

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        url = f"{self.setting('base_url')}/contacts/{contact_id}/tags"
        self.call("POST", url, json={"tags": list(tags)}, headers=self._headers())


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_WORKER_POLL_SECONDS": 0.05}


@pytest.fixture
def echo_adapter(monkeypatch: pytest.MonkeyPatch) -> type[EchoCrmAdapter]:
    from bridge.connections.adapter_registry import adapter_types

    monkeypatch.setitem(adapter_types(), "echocrm", EchoCrmAdapter)
    return EchoCrmAdapter


@pytest.fixture
def echo_connection(app, echo_adapter, make_connection) -> Callable[..., str]:
    """``echo_connection(name="echo", **settings)``: an echocrm connection (returns its name)."""

    def create(name: str = "echo", **settings: Any) -> str:
        make_connection(name, "echocrm", base_url=CRM, api_key="echo-secret-key-123", **settings)
        return name

    return create


class Behaviour:
    """What the ``test.*`` job kinds do: a test sets ``action`` (a callable taking the context)."""

    def __init__(self) -> None:
        self.action: Callable[[jobs.JobContext], Any] = lambda ctx: {"ok": True}
        self.seen: list[int] = []


BEHAVIOUR = Behaviour()


@jobs.job_handler("test.job")
def run_test_job(ctx: jobs.JobContext) -> Any:
    BEHAVIOUR.seen.append(ctx.delivery.id)
    return BEHAVIOUR.action(ctx)


@pytest.fixture
def behaviour() -> Iterator[Behaviour]:
    BEHAVIOUR.action = lambda ctx: {"ok": True}
    BEHAVIOUR.seen = []
    yield BEHAVIOUR


@pytest.fixture
def queue(app) -> Callable[..., int]:
    """``queue(kind="test.job", ordering=None, **payload) -> delivery id`` (committed)."""

    def add(kind: str = "test.job", ordering: str | None = None, **payload: Any) -> int:
        with app.app_context():
            row = outbox.enqueue(kind, payload=payload, ordering=ordering)
            db.session.commit()
            return row.id

    return add
