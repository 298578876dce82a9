"""An inbound webhook cannot write ``meta.signup_country`` (the server records it at
registration, CONTRACT.md §1): a CRM field of that name is dropped on ``add`` (one by one and
set-based, as a batch import makes users) and on ``update``, like a client's value on the API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.extensions import db
from bridge.inbound import bulk_add
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import ConnectionRuntime
from bridge.inbound.service import run_unit
from bridge.models import Connection, User
from crm_adapters.base import Contact

from .conftest import FLUENT_SETTINGS
from .payloads import subscriber

# The country and the tier are mapped CRM custom fields (an owner who mapped them both ways).
FIELD_MAP = {k: k for k in ("email", "first_name", "last_name", "signup_country", "tier")}


@pytest.fixture
def fluent_key(make_connection) -> str:
    return make_connection("fluent", "fluentcrm", field_map=FIELD_MAP, **FLUENT_SETTINGS)


def meta_of(app, user_id: int) -> dict:
    with app.app_context():
        return dict(db.session.get(User, user_id).meta or {})


def test_a_webhooks_add_and_update_drop_the_country_and_keep_the_rest(app, hook, fluent_key) -> None:
    added = hook("add", fluent_key, subscriber(custom_field={"signup_country": "US", "tier": "pro"}))
    assert added.status_code == 200, added.get_data(as_text=True)
    user_id = added.get_json()["user_id"]
    assert meta_of(app, user_id) == {"tier": "pro"}

    updated = hook("update", fluent_key, subscriber(custom_field={"signup_country": "FR", "tier": "gold"}))
    assert updated.status_code == 200, updated.get_data(as_text=True)
    assert updated.get_json()["updated_fields"] == ["tier"]
    assert meta_of(app, user_id) == {"tier": "gold"}


def test_a_webhooks_update_leaves_the_recorded_country_alone(app, hook, fluent_key, client, auth_headers) -> None:
    app.config["BRIDGE_GEO_HEADER"] = "CF-IPCountry"
    created = client.post(
        "/api/users",
        json={"email": "jane.doe@example.com", "first_name": "Jane", "last_name": "Doe"},
        headers={**auth_headers, "CF-IPCountry": "NL"},
    )
    assert created.get_json()["meta"] == {"signup_country": "NL"}

    updated = hook("update", fluent_key, subscriber(custom_field={"signup_country": "US"}))
    assert updated.status_code == 200, updated.get_data(as_text=True)
    assert updated.get_json()["updated_fields"] == []
    assert meta_of(app, created.get_json()["id"]) == {"signup_country": "NL"}


def test_the_set_based_add_of_a_batch_import_drops_the_country(ctx, make_connection) -> None:
    make_connection("fluent", "fluentcrm", field_map=FIELD_MAP)
    runtime = ConnectionRuntime.prepare(db.session.scalar(select(Connection)))
    fields = {"email": "ann@example.com", "first_name": "Ann", "signup_country": "US", "tier": "pro"}
    contacts = [
        Contact("1", "ann@example.com", fields, []),
        Contact("2", "bo@example.com", {**fields, "email": "bo@example.com"}, []),
    ]
    run_unit(lambda: bulk_add.add_many(runtime, contacts, InboundOptions()))
    assert [u.meta for u in db.session.scalars(select(User).order_by(User.email))] == [{"tier": "pro"}, {"tier": "pro"}]
