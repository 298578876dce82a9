"""``GET /api/webhook-events``: the inbound log over the API, newest first, filtered."""

from __future__ import annotations

from .payloads import subscriber


def test_requires_a_token(client):
    response = client.get("/api/webhook-events")
    assert response.status_code == 401
    assert response.get_json()["success"] is False


def test_lists_newest_first_with_filters(client, hook, fluent_key, auth_headers):
    hook("add", fluent_key, subscriber())
    hook("update", fluent_key, subscriber(first_name="Janet"))
    hook("add", "cbk_wrong", subscriber())
    body = client.get("/api/webhook-events", headers=auth_headers).get_json()
    assert body["total"] == 3 and body["page"] == 1
    newest, update, add = body["items"]
    assert (newest["status"], newest["outcome"], newest["connection"]) == (403, "invalid_access_key", None)
    assert (update["action"], update["outcome"], update["contact_id"]) == ("update", "updated", "42")
    assert (add["status"], add["outcome"], add["connection"], add["method"]) == (200, "created", "fluent", "POST")
    assert add["user_id"] == update["user_id"] and add["duration_ms"] > 0
    assert add["source_ip"] == "127.0.0.1"
    assert add["path"] == "/?wpf_action=add&access_key=[redacted]"
    assert '"email": "jane.doe@example.com"' in add["payload"]

    filtered = client.get("/api/webhook-events?status=403", headers=auth_headers).get_json()
    assert [item["outcome"] for item in filtered["items"]] == ["invalid_access_key"] and filtered["total"] == 1
    by_action = client.get("/api/webhook-events?action=update&connection=fluent", headers=auth_headers).get_json()
    assert [item["id"] for item in by_action["items"]] == [update["id"]]
    by_outcome = client.get("/api/webhook-events?status=created", headers=auth_headers).get_json()
    assert [item["id"] for item in by_outcome["items"]] == [add["id"]]
    page_two = client.get("/api/webhook-events?per_page=2&page=2", headers=auth_headers).get_json()
    assert [item["id"] for item in page_two["items"]] == [add["id"]] and page_two["page"] == 2


def test_bad_paging_is_a_400(client, auth_headers):
    response = client.get("/api/webhook-events?page=0", headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_parameter"
