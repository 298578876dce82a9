"""Console pages that change connections: create, edit (a form per type from the adapter's
declared settings), enable/disable, remove, test, rotate the access key, refresh the CRM's
field and tag names, and the dry-run pane.

Thin: each view parses the form, calls ``bridge.connections`` (the same services the API and the
CLI call), and renders. The access key appears in full only in the answer to its creation or
rotation: those pages are rendered directly (no redirect), so the key never sits in a session.
"""

from __future__ import annotations

import math

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bridge.accounts import staff
from bridge.admin import queries
from bridge.admin.blueprint import bp
from bridge.connections import catalog as crm_catalog
from bridge.connections import forms
from bridge.connections import service as connection_service
from bridge.connections import settings as settings_service
from bridge.connections.adapter_registry import UnknownAdapterType, adapter_types
from bridge.connections.dry_run import DryRunUserNotFound, UnknownPreset, dry_run
from bridge.crypto import SecretUnreadable
from bridge.extensions import db
from bridge.models import Connection
from bridge.outbound.redaction import scrub_text
from crm_adapters.base import DEFAULT_FIELD_MAP
from crm_adapters.errors import AdapterError


def connection_or_404(name: str) -> Connection:
    connection = connection_service.get_connection(name)
    if connection is None:
        abort(404, f"There is no connection named {name!r}.")
    return connection


def _urls(key: str) -> dict[str, str]:
    return connection_service.webhook_urls(connection_service.base_url(request.url_root), key)


def _render_key_page(connection: Connection, key: str, *, created: bool, grace: float | None = None) -> str:
    """The one page that shows a full access key: after creation or rotation."""
    return render_template(
        "admin/connection_key.html",
        connection=connection,
        access_key=key,
        webhook_urls=_urls(key),
        created=created,
        grace=grace,
    )


def _render_form(
    type_slug: str, *, connection: Connection | None, problems: list[str] | None = None, name: str = ""
) -> tuple[str, int]:
    current = settings_service.public_settings(connection) if connection else {}
    field_map = forms.field_map_rows(current) or list(DEFAULT_FIELD_MAP.items())
    if request.method == "POST":  # show what was sent back, typed as saving would read it
        changes = forms.changes_from_form(type_slug, request.form, creating=connection is None)
        secret_names = {s.name for s in settings_service.settings_for_type(type_slug) if s.secret}
        current = {**current, **{k: v for k, v in changes.items() if k not in secret_names and v is not None}}
        field_map = list(forms.field_map_from(request.form).items())
    found = crm_catalog.cached_catalog(connection) if connection else None
    tags = current.get("assign_tags") or []  # a list as stored, the typed text when sent back
    html = render_template(
        "admin/connection_form.html",
        connection=connection,
        type_slug=type_slug,
        adapter=adapter_types()[type_slug],
        name=name or (connection.name if connection else ""),
        fields=forms.form_fields(type_slug, current, roles=staff.assignable_roles()),
        field_map=field_map,
        assign_tags=tags if isinstance(tags, str) else ", ".join(tags),
        enabled=bool(current.get("enabled", True)),
        local_fields=forms.local_field_names(),
        catalog=found,
        problems=problems or [],
    )
    return html, 422 if problems else 200


@bp.get("/connections/new")
def connection_new() -> str | tuple[str, int]:
    type_slug = request.args.get("type", "")
    if type_slug not in adapter_types():
        return render_template("admin/connection_types.html", adapter_types=adapter_types())
    return _render_form(type_slug, connection=None)


@bp.post("/connections/new")
def connection_create() -> str | tuple[str, int]:
    type_slug, name = request.form.get("type", ""), request.form.get("name", "").strip()
    if type_slug not in adapter_types():
        abort(400, "Choose a connection type from the list.")
    changes = forms.changes_from_form(type_slug, request.form, creating=True)
    try:
        connection, key = connection_service.create_connection(name, type_slug, changes)
        db.session.commit()
    except (settings_service.InvalidConnection, UnknownAdapterType) as exc:
        db.session.rollback()
        problems = exc.problems if isinstance(exc, settings_service.InvalidConnection) else [str(exc)]
        return _render_form(type_slug, connection=None, problems=problems, name=name)
    return _render_key_page(connection, key, created=True)


@bp.get("/connections/<name>/edit")
def connection_edit(name: str) -> str | tuple[str, int]:
    connection = connection_or_404(name)
    return _render_form(connection.type, connection=connection)


@bp.post("/connections/<name>/edit")
def connection_update(name: str) -> Response | tuple[str, int]:
    connection = connection_or_404(name)
    changes = forms.changes_from_form(connection.type, request.form, creating=False)
    try:
        settings_service.apply_settings(connection, changes)
        db.session.commit()
    except settings_service.InvalidConnection as exc:
        db.session.rollback()
        return _render_form(connection.type, connection=connection, problems=exc.problems)
    flash(f"{connection.name}: settings saved.", "success")
    return redirect(url_for("admin.connection_detail", name=connection.name))


@bp.post("/connections/<name>/catalog")
def connection_catalog_refresh(name: str) -> Response:
    """Ask the CRM again for its field and tag names (the pickers' cache)."""
    connection = connection_or_404(name)
    found = crm_catalog.crm_catalog(connection, refresh=True)
    if found.errors:
        flash("The CRM did not list everything: " + "; ".join(found.errors), "warning")
    else:
        flash(f"Loaded {len(found.fields)} fields and {len(found.tags)} tags from the CRM.", "success")
    return redirect(url_for("admin.connection_edit", name=connection.name))


@bp.post("/connections/<name>/enabled")
def connection_toggle(name: str) -> Response:
    connection = connection_or_404(name)
    enabled = request.form.get("enabled") == "1"
    # Not judged as a whole: switching an incomplete connection off (or on) must not wait for
    # its other settings to be fixed.
    settings_service.apply_settings(connection, {"enabled": enabled}, judge_connection=False)
    db.session.commit()
    flash(f"{connection.name} is {'enabled' if enabled else 'disabled'}.", "success")
    return redirect(url_for("admin.connection_detail", name=connection.name))


@bp.route("/connections/<name>/remove", methods=["GET", "POST"])
def connection_remove(name: str) -> str | Response | tuple[str, int]:
    connection = connection_or_404(name)
    summary = queries.summarise(connection)
    if request.method == "GET":
        return render_template("admin/connection_remove.html", summary=summary, error=None)
    if request.form.get("confirm_name", "").strip() != connection.name:
        error = f"Type the connection's name, {connection.name}, to confirm."
        return render_template("admin/connection_remove.html", summary=summary, error=error), 422
    connection_service.remove_connection(connection)
    db.session.commit()
    crm_catalog.forget(summary.connection.id)
    flash(f"Connection {name} removed, with its keys, tags, links and queued deliveries.", "success")
    return redirect(url_for("admin.connections"))


@bp.post("/connections/<name>/test")
def connection_test(name: str) -> Response:
    connection = connection_or_404(name)
    try:
        note = connection_service.check_connection(connection)
    except settings_service.UnreadableSecrets as exc:
        flash(f"Not tested: {', '.join(exc.names)} cannot be decrypted ({exc.hint}).", "error")
    except (AdapterError, SecretUnreadable) as exc:
        message = scrub_text(str(exc), settings_service.secret_values(connection))
        flash(f"Connection test failed: {message}", "error")
    except NotImplementedError:
        flash(f"The {connection.type} adapter has no connection test.", "warning")
    except settings_service.IncompleteConnection as exc:
        flash(f"Not tested: {exc}.", "warning")
    else:
        if note:
            flash(f"{connection.name}: {note}.", "warning")
        else:
            flash(f"{connection.name}: the CRM accepted our credentials.", "success")
    return redirect(url_for("admin.connection_detail", name=connection.name))


def parse_grace_hours(raw: str | None) -> float:
    """The grace period from a form: a number of hours from 0 to 30 days, else ``ValueError``
    (never a silent default: a typo must not rotate with 24 h)."""
    text = (raw or "").strip()
    try:
        hours = float(text)
    except ValueError:
        raise ValueError(f"The grace period must be a number of hours, not {text or 'nothing'!r}.") from None
    if not math.isfinite(hours) or not 0 <= hours <= connection_service.MAX_GRACE_HOURS:
        raise ValueError(f"The grace period must be between 0 and {connection_service.MAX_GRACE_HOURS} hours.")
    return hours


@bp.route("/connections/<name>/rotate-key", methods=["GET", "POST"])
def connection_rotate_key(name: str) -> str | tuple[str, int]:
    """GET asks for confirmation and the grace period; POST rotates and answers with the page
    that shows the new key once."""
    connection = connection_or_404(name)
    if request.method == "GET":
        return render_template("admin/connection_rotate.html", connection=connection, error=None, grace="24")
    try:
        grace = parse_grace_hours(request.form.get("grace_hours"))
    except ValueError as exc:
        grace_raw = request.form.get("grace_hours", "")
        return render_template(
            "admin/connection_rotate.html", connection=connection, error=str(exc), grace=grace_raw
        ), 400
    new_key = connection_service.rotate_access_key(connection, grace_hours=grace)
    db.session.commit()
    return _render_key_page(connection, new_key, created=False, grace=grace)


@bp.route("/connections/<name>/dry-run", methods=["GET", "POST"])
def connection_dry_run(name: str) -> str | tuple[str, int]:
    """The request(s) a registration would send: for a preset or a user, rendered or sent."""
    connection = connection_or_404(name)
    form = {"subject": "preset", "user": "", "send": "0"}
    result, error = None, None
    if request.method == "POST":
        form.update({k: request.form.get(k, v) for k, v in form.items()})
        try:
            user_id = queries.user_id_from(form["user"]) if form["subject"] == "user" else None
            result = dry_run(connection, preset="new_us_user", user_id=user_id, send=form["send"] == "1")
        except (UnknownPreset, DryRunUserNotFound, ValueError) as exc:
            error = str(exc)
        except settings_service.UnreadableSecrets as exc:
            error = f"{', '.join(exc.names)} cannot be decrypted ({exc.hint})."
    html = render_template(
        "admin/connection_dry_run.html", connection=connection, form=form, result=result, error=error
    )
    return (html, 422) if error else html
