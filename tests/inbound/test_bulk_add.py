"""The batch import's set-based ``add`` (``bridge.inbound.bulk_add``) makes users exactly as the
per-contact ``add`` of a webhook does: same usernames (format, preferred ``user_login``, numeric
suffixes, names taken already), roles, names, meta, tags, links and welcome mails."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from bridge.accounts import users
from bridge.accounts.user_fingerprint import fingerprints
from bridge.extensions import db
from bridge.inbound import bulk_add
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import ConnectionRuntime, ContactPlan, InboundRejected
from bridge.inbound.service import apply_plans, run_unit
from bridge.models import Connection, ContactLink, Delivery, Role, User, UserTag
from crm_adapters.base import Contact


def contacts() -> list[Contact]:
    def contact(cid: str, email: str, first: str, last: str, tags: list[str], **more: Any) -> Contact:
        fields = {"first_name": first, "last_name": last, "email": email, **more}
        return Contact(cid, email, fields, tags)

    return [
        contact("1", "ann@example.com", "Ann", "Lee", ["vip"]),
        contact("2", "ann2@example.com", "Ann", "Lee", []),  # same name: a suffix
        contact("3", "taken@example.com", "Taken", "", ["a", "b"], company="Acme"),  # meta
        contact("4", "pref@example.com", "Pia", "Ray", ["vip"], user_login="pia.r"),
        contact("5", "pref2@example.com", "Pia", "Ray", [], user_login="pia.r"),  # preferred taken
        contact("6", "role@example.com", "Rolf", "", [], role="editor"),
    ]


def snapshot() -> dict[str, Any]:
    """The users the contacts made (password apart), their tags, links and welcome mails."""
    made = User.email.not_in(("someone@example.com", "other@example.com"))
    columns = (User.email, User.username, User.role, User.first_name, User.last_name, User.meta)
    ids = dict(db.session.execute(select(User.id, User.email)).all())
    return {
        "users": [tuple(row) for row in db.session.execute(select(*columns).where(made).order_by(User.email))],
        "passwords": set(db.session.scalars(select(User.password_hash).where(made))),
        "tags": sorted((ids[t.user_id], t.name) for t in db.session.scalars(select(UserTag))),
        "links": sorted((link.contact_id, ids[link.user_id]) for link in db.session.scalars(select(ContactLink))),
        "mails": len(db.session.scalars(select(Delivery.id).where(Delivery.kind == "mail.welcome")).all()),
    }


@pytest.mark.parametrize("username_format", ["flname", "email", "fnamenum"])
def test_the_set_based_add_makes_the_same_users_as_a_webhooks_add(ctx, make_connection, username_format):
    make_connection("fluent", "fluentcrm", username_format=username_format, send_welcome_email=True)
    db.session.add(Role(slug="editor", title="Editor"))
    users.create_user(email="someone@example.com", username="takenlee" if username_format == "flname" else "taken")
    users.create_user(email="other@example.com", username="taken1")
    db.session.commit()
    runtime = ConnectionRuntime.prepare(db.session.scalar(select(Connection)))
    options = InboundOptions()

    results = run_unit(lambda: bulk_add.add_many(runtime, contacts(), options))
    bulk = snapshot()
    assert [r.outcome for r in results] == ["created"] * 6

    for table in (Delivery, ContactLink, UserTag):
        db.session.execute(delete(table))
    db.session.execute(delete(User).where(User.email.not_in(("someone@example.com", "other@example.com"))))
    db.session.commit()
    plans = [ContactPlan(c) for c in contacts()]
    for plan in plans:
        plan.credentials = None
    apply_plans(runtime, "add", plans, options)
    one_by_one = snapshot()

    # The same users, tags, links and mails; each with a generated password, hashed the same way.
    assert {**bulk, "passwords": None} == {**one_by_one, "passwords": None}
    method = lambda hashes: {h.split("$", 1)[0] for h in hashes}  # noqa: E731
    assert None not in bulk["passwords"] and method(bulk["passwords"]) == method(one_by_one["passwords"])
    assert bulk["links"] == sorted((c.contact_id, c.email) for c in contacts())
    assert bulk["mails"] == 6  # a welcome mail each (the connection's send_welcome_email)


def test_a_refused_contact_refuses_the_page(ctx, make_connection):
    make_connection("fluent", "fluentcrm")
    runtime = ConnectionRuntime.prepare(db.session.scalar(select(Connection)))
    page = [*contacts()[:2], Contact("9", "x@example.com", {"role": "administrator"}, [])]
    with pytest.raises(InboundRejected) as refused:
        run_unit(lambda: bulk_add.add_many(runtime, page, InboundOptions()))
    assert refused.value.code == "forbidden_role"
    assert db.session.scalar(select(User.id)) is None  # nothing of the page is kept


def test_the_fingerprints_it_gives_are_the_ones_undo_reads_back(ctx, make_connection):
    """A created user's fingerprint is taken from the values written, not read back: it must be
    exactly what ``fingerprints`` computes from the stored row (else ``undo`` keeps the user)."""
    make_connection("fluent", "fluentcrm", send_welcome_email=True)
    db.session.add(Role(slug="editor", title="Editor"))
    db.session.commit()
    runtime = ConnectionRuntime.prepare(db.session.scalar(select(Connection)))
    page = [
        *contacts(),
        Contact("7", "meta@example.com", {"email": "meta@example.com", "n": 1.5, "x": [1, "é"]}, ["é"]),
    ]

    results = run_unit(lambda: bulk_add.add_many(runtime, page, InboundOptions()))
    db.session.expire_all()

    given = {result.user_id: result.fingerprint for result in results}
    assert None not in given.values()
    assert fingerprints(given) == given
