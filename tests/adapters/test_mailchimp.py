"""Mailchimp: data for the contract suite (Marketing API 3.0: members by MD5 of the email, PUT
upsert, merge fields, tags by name, ``count``/``offset`` pages with ``total_items``)."""

from __future__ import annotations

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, basic, inbound, includes
from crm_adapters.base import OutboundContact
from crm_adapters.errors import ContactNotFound
from crm_adapters.mailchimp import MailchimpAdapter, subscriber_hash

KIM = "f1d6c9b11f86ec51dcf567595b8a39f1"  # md5("kim.park@example.com")
MEMBERS = f"/lists/a6b5da1054/members/{KIM}"
MEMBER = {
    "id": KIM,
    "email_address": "Kim.Park@Example.com",
    "status": "subscribed",
    "merge_fields": {"FNAME": "Kim", "LNAME": "Park", "WPPASS": ""},
    "tags": [{"id": 1, "name": "Customers"}],
}
NOT_FOUND = {
    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
    "title": "Resource Not Found",
    "status": 404,
    "detail": "The requested resource could not be found.",
    "instance": "x",
}
MEMBER_TAGS_1 = {"tags": [{"id": 1, "name": "Customers"}], "total_items": 2}
MEMBER_TAGS_2 = {"tags": [{"id": 2, "name": "VIP"}], "total_items": 2}
NEW = OutboundContact(email="kim.park@example.com", fields={"first_name": "Kim", "last_name": "Park"})


def _loaded(contact) -> None:
    assert (contact.contact_id, contact.email, contact.tags) == (KIM, "kim.park@example.com", ["Customers"])
    assert contact.fields == {"first_name": "Kim", "last_name": "Park", "email": "kim.park@example.com"}


class TestMailchimp(AdapterContract):
    case = AdapterCase(
        type="mailchimp",
        config={"api_key": "0123456789abcdef-us21", "list_id": "a6b5da1054"},
        api="https://us21.api.mailchimp.com/3.0",
        auth_header=("Authorization", basic("crm-bridge", "0123456789abcdef-us21")),
        fixtures=["mailchimp/subscribe.json"],
        pings=[inbound("GET"), inbound("GET", query={"wpf_action": "add"})],
        samples=[
            Sample(
                "upemail: the new address names the member",
                inbound(
                    body="type=upemail&data%5Bold_email%5D=old%40x.io&data%5Bnew_email%5D=New%40X.io",
                    content_type="application/x-www-form-urlencoded",
                ),
                {
                    "contact_id": subscriber_hash("new@x.io"),
                    "email": "new@x.io",
                    "fields": {"email": "new@x.io"},
                    "tags": None,
                },
            ),
        ],
        operations={
            "check": Operation("check", (), [Exchange("GET", "/ping", json={"health_status": "Everything's Chimpy!"})]),
            "find_contact_id": Operation(
                "find_contact_id", ("Kim.Park@example.com",), [Exchange("GET", MEMBERS, json={"id": KIM})], returns=KIM
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id",
                ("nobody@example.com",),
                [
                    Exchange(
                        "GET",
                        f"/lists/a6b5da1054/members/{subscriber_hash('nobody@example.com')}",
                        status=404,
                        json=NOT_FOUND,
                    )
                ],
                returns=None,
            ),
            "load_contact": Operation("load_contact", (KIM,), [Exchange("GET", MEMBERS, json=MEMBER)], check=_loaded),
            "load_contact_missing": Operation(
                "load_contact",
                ("0" * 32,),
                [Exchange("GET", "/lists/a6b5da1054/members/" + "0" * 32, status=404, json=NOT_FOUND)],
                raises=ContactNotFound,
            ),
            "load_tags": Operation(
                "load_tags",
                (KIM,),
                [
                    Exchange("GET", MEMBERS + "/tags", json=MEMBER_TAGS_1, params={"offset": "0"}),
                    Exchange("GET", MEMBERS + "/tags", json=MEMBER_TAGS_2, params={"offset": "1"}),
                ],
                returns=["Customers", "VIP"],
            ),
            # PUT on the email's hash is Mailchimp's upsert: new and existing look the same.
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange(
                        "PUT",
                        MEMBERS,
                        json=MEMBER,
                        sends={
                            "email_address": NEW.email,
                            "status_if_new": "subscribed",
                            "merge_fields": {"FNAME": "Kim", "LNAME": "Park"},
                        },
                    )
                ],
                returns=KIM,
            ),
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [Exchange("PUT", MEMBERS, json=MEMBER, sends={"email_address": NEW.email})],
                returns=KIM,
            ),
            "update_fields_custom": Operation(
                "update_fields",
                (KIM, {"WPPASS": "s3cret-Passw0rd", "first_name": "K"}),
                [
                    Exchange(  # a custom merge field: its type is read first (field_format)
                        "GET",
                        "/lists/a6b5da1054/merge-fields",
                        json={"merge_fields": [{"tag": "WPPASS", "type": "text"}], "total_items": 1},
                    ),
                    Exchange(
                        "PATCH",
                        MEMBERS,
                        json=MEMBER,
                        sends={"merge_fields": {"WPPASS": "s3cret-Passw0rd", "FNAME": "K"}},
                    ),
                ],
                returns=None,
            ),
            "apply_tags": Operation(
                "apply_tags",
                (KIM, ["VIP", "New"]),
                [
                    Exchange(
                        "POST",
                        MEMBERS + "/tags",
                        status=204,
                        body="",
                        sends={"tags": [{"name": "VIP", "status": "active"}, {"name": "New", "status": "active"}]},
                    )
                ],
            ),
            "remove_tags": Operation(
                "remove_tags",
                (KIM, ["VIP"]),
                [
                    Exchange(
                        "POST",
                        MEMBERS + "/tags",
                        status=204,
                        body="",
                        sends={"tags": [{"name": "VIP", "status": "inactive"}]},
                    )
                ],
            ),
            "list_tags": Operation(
                "list_tags",
                (),
                [
                    Exchange(
                        "GET",
                        "/lists/a6b5da1054/tag-search",
                        json={"tags": [{"id": 1, "name": "Customers"}, {"id": 2, "name": "VIP"}], "total_items": 2},
                    )
                ],
                returns=["Customers", "VIP"],
            ),
            "list_fields": Operation(
                "list_fields",
                (),
                [
                    Exchange(
                        "GET",
                        "/lists/a6b5da1054/merge-fields",
                        json={"merge_fields": [{"tag": "FNAME"}, {"tag": "WPPASS"}], "total_items": 2},
                    )
                ],
                check=includes("email_address", "FNAME", "WPPASS"),
            ),
        },
    )


def test_data_centre_comes_from_the_key_and_base_url_overrides_it() -> None:
    assert MailchimpAdapter({"api_key": "abc-us7"}, http=None).api_base == "https://us7.api.mailchimp.com/3.0"
    adapter = MailchimpAdapter({"api_key": "abc-us7", "base_url": "http://127.0.0.1:9/3.0/"}, http=None)
    assert adapter.api_base == "http://127.0.0.1:9/3.0"


def test_contact_id_is_md5_of_the_lower_cased_email() -> None:
    assert subscriber_hash(" Kim.Park@Example.com") == KIM
