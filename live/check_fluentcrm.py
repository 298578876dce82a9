"""`make live-check`: crm-bridge against the real FluentCRM of the wp-peer (issue 16).

Not part of `make test` (CI has no peer). Start the peer first (`shared/peer/setup.sh`; its
addresses are read from `/opt/wp-peer/env`, or the file named by `PEER_ENV`). This starts
crm-bridge (`crm-bridge serve` with the inline worker) on a temporary instance and a free
loopback port, checks what issue 16 saw go wrong against the real API, prints one line per
check and exits non-zero when one fails. The temporary instance is removed afterwards (kept,
and named, when a check failed). Contacts and tags it makes in FluentCRM carry a random suffix
and are left there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from wp_peer import PEER_ENV, FluentCrm, read_peer_env

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "crm-bridge"
TOKEN_PATTERN = re.compile(rb"enc:v1:[A-Za-z0-9_=-]{40,}")


class CheckFailed(AssertionError):
    pass


def peer_env() -> dict[str, str]:
    env = read_peer_env()
    if env is None:
        sys.exit(f"live-check: {PEER_ENV} not found: start the peer with shared/peer/setup.sh")
    return env


def until(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(step)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Bridge:
    """crm-bridge serving a temporary instance on a free loopback port."""

    def __init__(self, instance: Path) -> None:
        self.instance = instance
        self.env = {
            **os.environ,
            "BRIDGE_INSTANCE_PATH": str(instance),
            "BRIDGE_ALLOW_PRIVATE_TARGETS": "1",
            "BRIDGE_WORKER": "inline",
        }
        for name in ("DATABASE_URL", "SECRET_KEY"):
            self.env.pop(name, None)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.key = ""

    def cli(self, *args: str) -> Any:
        done = subprocess.run([str(CLI), *args], env=self.env, capture_output=True, text=True, check=True)  # noqa: S603
        return json.loads(done.stdout) if "--json" in args else done.stdout

    @contextmanager
    def running(self, settings: dict[str, Any]) -> Iterator[Bridge]:
        """Serve with one connection ``fluent`` (made before the first start: ``serve`` makes a
        placeholder connection only when there is none); its access key is ``self.key``."""
        self.cli("init")
        assignments = [f"--set={name}={json.dumps(value)}" for name, value in settings.items()]
        self.key = self.cli("connection", "add", "fluent", "--type", "fluentcrm", *assignments, "--json")["access_key"]
        self.http.headers["Authorization"] = "Bearer " + self.cli("token", "create", "live", "--json")["token"]
        log = (self.instance / "serve.log").open("w")
        server = subprocess.Popen(  # noqa: S603
            [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            if not until(self._up, 30, 0.1):
                raise CheckFailed(f"crm-bridge did not start (see {self.instance / 'serve.log'})")
            yield self
        finally:
            server.terminate()
            server.wait(30)
            log.close()

    def _up(self) -> bool:
        try:
            return self.http.get(self.url + "/healthz", timeout=2).status_code in (200, 503)
        except requests.ConnectionError:
            return False

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=30, **kwargs)

    def hook(self, action: str, key: str, **params: str) -> requests.Response:
        return requests.post(self.url + "/", params={"wpf_action": action, "access_key": key, **params}, timeout=30)


# -- the checks -------------------------------------------------------------------------------


class LiveCheck:
    def __init__(self, bridge: Bridge, crm: FluentCrm, env: dict[str, str]) -> None:
        self.bridge, self.crm, self.env = bridge, crm, env
        self.run = secrets.token_hex(3)
        self.key = bridge.key
        self.added: dict[str, Any] = {}

    def set_assign_tags(self, tags: list[str]) -> None:
        response = self.bridge.api("PATCH", "/api/connections/fluent", json={"settings": {"assign_tags": tags}})
        expect(response.status_code == 200, f"setting assign_tags: {response.status_code} {response.text[:200]}")

    def linked(self, user_id: int) -> str | None:
        links = self.bridge.api("GET", f"/api/users/{user_id}").json().get("crm_links") or []
        return links[0]["contact_id"] if links else None

    def registration(self) -> str:
        """Timed from the registration's 201 until crm-bridge's API shows the push succeeded
        (polled every 20 ms; the contact, its tags and the link are written by then), then
        checked in FluentCRM: the check's own reads of the slow peer are not counted."""
        email, local = f"live-{self.run}@example.com", "newsletter"  # a local tag the peer has
        response = self.bridge.api("POST", "/api/users", json={"email": email, "first_name": "Live", "tags": [local]})
        started = time.monotonic()
        expect(response.status_code == 201, f"registration: {response.status_code} {response.text[:200]}")
        user = response.json()

        def delivered() -> dict[str, Any] | None:
            items = self.bridge.api("GET", "/api/deliveries", params={"user_id": user["id"]}).json()["items"]
            return next((d for d in items if d["status"] == "succeeded"), None)

        delivery = until(delivered, 10, 0.02)
        took = time.monotonic() - started
        expect(bool(delivery), "the registration was not delivered within 10 s")
        contact = self.crm.by_email(email) or {}
        tags = sorted(t["slug"] for t in contact.get("tags") or [])
        linked = self.linked(user["id"])
        expect(tags == ["newsletter", "vip"], f"contact tags {tags}")
        expect(linked == str(contact.get("id")), f"link {linked} for contact {contact.get('id')}")
        expect(took <= 1.0, f"contact, tags and link took {took:.2f} s")
        return f"contact {linked} with tags {tags} and its link in {took:.2f} s"

    def concurrent_new_tag(self) -> str:
        title = f"Spring Promo {self.run}"
        slug = f"spring-promo-{self.run}"
        self.set_assign_tags([title])
        emails = [f"spring{i}-{self.run}@example.com" for i in range(8)]

        def register(email: str) -> int:
            response = self.bridge.api("POST", "/api/users", json={"email": email})
            expect(response.status_code == 201, f"registration of {email}: {response.status_code}")
            return int(response.json()["id"])

        with ThreadPoolExecutor(8) as pool:
            user_ids = list(pool.map(register, emails))

        def all_done() -> bool:
            contacts = [self.crm.by_email(e) for e in emails]
            tagged = all(c and slug in {t["slug"] for t in c.get("tags") or []} for c in contacts)
            return tagged and all(self.linked(u) for u in user_ids)

        done = until(all_done, 30, 0.2)
        same_slug = [t for t in self.crm.tags() if t["slug"] == slug]
        dead = self.bridge.api("GET", "/api/deliveries", params={"status": "dead"}).json()["total"]
        expect(len(same_slug) == 1, f"{len(same_slug)} tags with slug {slug}")
        expect(bool(done), "not all eight contacts are tagged and linked within 30 s")
        expect(dead == 0, f"{dead} dead deliveries")
        self.set_assign_tags(["vip"])
        return f"1 tag {slug!r}, 8 tagged and linked contacts, 0 dead deliveries"

    def add_by_id(self) -> str:
        email = f"byid-{self.run}@example.com"
        vip = next(t["id"] for t in self.crm.tags() if t["slug"] == "vip")
        body = {"email": email, "first_name": "By", "last_name": "Id", "status": "subscribed", "tags": [vip]}
        created = self.crm.call("POST", "/subscribers", json=body)
        expect(created.status_code == 200, f"creating the contact in FluentCRM: {created.status_code}")
        contact_id = str(created.json()["contact"]["id"])
        first = self.bridge.hook("add", self.key, contact_id=contact_id)
        expect(first.status_code == 200, f"add: {first.status_code} {first.text[:200]}")
        answer = first.json()
        user = self.bridge.api("GET", f"/api/users/{answer['user_id']}").json()
        loaded = (user["email"], user["first_name"], user["last_name"], answer["tags"])
        expect(loaded == (email, "By", "Id", ["vip"]), f"loaded {loaded}")
        again = self.bridge.hook("add", self.key, contact_id=contact_id).json()
        expect(again.get("user_id") == answer["user_id"] and again.get("created") is False, f"repeat: {again}")
        self.added = {"contact_id": contact_id, "user_id": answer["user_id"], "password": answer.get("password")}
        return f"contact {contact_id}: email, names and tags loaded; a repeat returns user {answer['user_id']}"

    def update_after_rename(self) -> str:
        contact_id, user_id = self.added["contact_id"], self.added["user_id"]
        renamed = self.crm.call("PUT", f"/subscribers/{contact_id}", json={"subscriber": {"first_name": "Renamed"}})
        expect(renamed.status_code == 200, f"renaming in FluentCRM: {renamed.status_code}")
        answer = self.bridge.hook("update", self.key, contact_id=contact_id).json()
        name = self.bridge.api("GET", f"/api/users/{user_id}").json()["first_name"]
        expect("first_name" in answer.get("updated_fields", []) and name == "Renamed", f"update: {answer}")
        return f"updated_fields {answer['updated_fields']}, first name now {name!r}"

    def deleted_contact(self) -> str:
        contact_id = self.added["contact_id"]  # linked to a user: an id-only update loads it
        deleted = self.crm.call("DELETE", f"/subscribers/{contact_id}")
        expect(deleted.status_code == 200, f"deleting in FluentCRM: {deleted.status_code}")
        response = self.bridge.hook("update", self.key, contact_id=contact_id)
        error = response.json().get("error")
        expect((response.status_code, error) == (404, "contact_not_found"), f"{response.status_code} {error}")
        return f"update for deleted contact {contact_id}: 404 contact_not_found"

    def password_returned_and_wiped(self) -> str:
        password, contact_id = self.added.get("password"), self.added["contact_id"]
        expect(bool(password), "the add generated no password to return")
        field = self.env.get("A_CUSTOM_FIELD", "wp_password")

        def returned() -> bool:
            contact = self.crm.contact(contact_id) or {}
            return (contact.get("custom_values") or {}).get(field) == password

        expect(until(returned, 10, 0.2), f"the password never reached the {field} custom field")
        leftovers = until(lambda: not self._password_in_files(password), 5, 0.1)
        expect(bool(leftovers), f"the password is still in {self._password_in_files(password)}")
        files = sorted(p.name for p in self.bridge.instance.rglob("*") if p.is_file())
        return f"in {field}; not in any of {len(files)} files ({', '.join(files)})"

    def batch_import_of_a_tag(self) -> str:
        """A fresh tag on three contacts made in FluentCRM; ``crm-bridge batch import --tag``
        through a second connection (no password field to return: an import writes nothing to
        the CRM) makes three users, linked; a rerun makes none."""
        title = f"Import {self.run}"
        made = self.crm.call("POST", "/tags", json={"title": title})
        expect(made.status_code == 200, f"creating tag {title!r}: {made.status_code}")
        tag_id = made.json()["item"]["id"]
        emails = [f"import{i}-{self.run}@example.com" for i in range(3)]
        for email in emails:
            body = {"email": email, "first_name": "Imported", "status": "subscribed", "tags": [tag_id]}
            created = self.crm.call("POST", "/subscribers", json=body)
            expect(created.status_code == 200, f"creating {email} in FluentCRM: {created.status_code}")
        env = self.env
        settings = {"base_url": env["A_URL"], "username": env["A_APP_USER"], "app_password": env["A_APP_PASSWORD"]}
        assignments = [f"--set={name}={json.dumps(value)}" for name, value in settings.items()]
        self.bridge.cli("connection", "add", "importer", "--type", "fluentcrm", *assignments, "--json")
        first = self.bridge.cli("batch", "import", "importer", "--tag", title, "--json")
        outcome = (first["status"], first["created"], first["failed"])
        expect(outcome == ("succeeded", 3, 0), f"import: {first}")
        for email in emails:
            users = self.bridge.api("GET", "/api/users", params={"email": email}).json()["items"]
            expect(len(users) == 1 and users[0]["crm_links"], f"{email}: {users}")
        again = self.bridge.cli("batch", "import", "importer", "--tag", title, "--json")
        expect((again["status"], again["created"]) == ("succeeded", 0), f"rerun: {again}")
        return f"tag {title!r}: 3 contacts made 3 linked users; a rerun created none ({again['unchanged']} unchanged)"

    def _password_in_files(self, password: str) -> list[str]:
        """Files holding the password, in clear or encrypted with the instance's key."""
        found: list[str] = []
        for path in self.bridge.instance.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if password.encode() in data or any(self._decrypts_to(t, password) for t in TOKEN_PATTERN.findall(data)):
                found.append(path.name)
        return found

    def _decrypts_to(self, token: bytes, password: str) -> bool:
        from bridge import create_app, crypto

        if not hasattr(self, "_app"):
            os.environ["BRIDGE_INSTANCE_PATH"] = str(self.bridge.instance)
            self._app = create_app({"BRIDGE_WORKER": "off"})
        with self._app.app_context():
            try:
                return crypto.decrypt(token.decode()) == password
            except Exception:  # another secret, or a cut token: not this password
                return False


def main() -> int:
    env = peer_env()
    crm = FluentCrm(env)
    instance = Path(tempfile.mkdtemp(prefix="crm-bridge-live-"))
    failures = 0
    settings = {
        "base_url": env["A_URL"],
        "username": env["A_APP_USER"],
        "app_password": env["A_APP_PASSWORD"],
        "assign_tags": ["vip"],
        "return_password_field": env.get("A_CUSTOM_FIELD", "wp_password"),
        "return_password_in_response": True,
    }
    with Bridge(instance).running(settings) as bridge:
        check = LiveCheck(bridge, crm, env)
        steps = [
            ("registration appears with tags and link", check.registration),
            ("8 concurrent registrations, one new tag", check.concurrent_new_tag),
            ("add by contact id", check.add_by_id),
            ("id-only update after a rename", check.update_after_rename),
            ("returned password", check.password_returned_and_wiped),
            ("deleted contact", check.deleted_contact),
            ("batch import of a tag", check.batch_import_of_a_tag),
        ]
        for name, step in steps:
            try:
                print(f"ok    {name}: {step()}", flush=True)
            except (CheckFailed, requests.RequestException, KeyError) as exc:
                failures += 1
                print(f"FAIL  {name}: {exc}", flush=True)
    if failures:
        print(f"{failures} check(s) failed; the instance is kept in {instance}")
        return 1
    shutil.rmtree(instance, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
