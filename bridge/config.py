"""Configuration in three layers (Flask tutorial): defaults here, then ``instance/config.py``,
then the environment (CONTRACT.md §1), then test overrides passed to ``create_app``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Config

TRUTHY = ("1", "true", "yes", "on")


class DefaultConfig:
    BRIDGE_WORKER = "off"
    BRIDGE_ALLOW_PRIVATE_TARGETS = False
    BRIDGE_OUTBOUND_ALLOWLIST = ""
    BRIDGE_MAIL_URL: str | None = None
    BRIDGE_MAIL_FROM: str | None = None  # sender of notification mail; default "SITE <no-reply@HOST>"
    BRIDGE_MAX_BODY_BYTES = 1_048_576
    BRIDGE_PUBLIC_SIGNUP = True
    BRIDGE_SITE_NAME = "crm-bridge"
    BRIDGE_BASE_URL: str | None = None
    BRIDGE_SIGNIN_URL: str | None = None  # where users sign in; named on the "password set" page
    BRIDGE_RATELIMIT_STORAGE_URL: str | None = None  # e.g. redis://127.0.0.1:6379/0; default: the database
    BRIDGE_FAILED_KEY_LIMIT = 20  # failed access-key attempts per address per minute
    BRIDGE_REGISTER_LIMIT = 10  # /register attempts per address per minute (CONTRACT.md §10)
    BRIDGE_TRUSTED_PROXIES = 0  # proxies appending to X-Forwarded-For in front of the service
    BRIDGE_FAILED_KEY_CACHE_SECONDS = 1.0  # how late another process's refusal may reach this one
    BRIDGE_ACCESS_KEY_CACHE_SECONDS = 5.0  # how long a verified access key or API token is trusted
    BRIDGE_LEASE_SECONDS = 60
    BRIDGE_WORKER_POLL_SECONDS = 0.1
    BRIDGE_WORKER_NICE = 10  # `crm-bridge worker` lowers its CPU priority by this much: web requests first
    CRM_WEBHOOK_SECRET: str | None = None
    CRM_CALLBACK_SECRET: str | None = None
    BRIDGE_GEO_HEADER: str | None = None  # e.g. CF-IPCountry: the signup country from the owner's proxy
    BRIDGE_GEOIP_DB: str | None = None  # a MaxMind-format database file, when no header is configured
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {}
    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    JSON_SORT_KEYS = False


ENV_STRINGS = (
    "DATABASE_URL",
    "SECRET_KEY",
    "BRIDGE_WORKER",
    "BRIDGE_OUTBOUND_ALLOWLIST",
    "BRIDGE_MAIL_URL",
    "BRIDGE_MAIL_FROM",
    "BRIDGE_SITE_NAME",
    "BRIDGE_BASE_URL",
    "BRIDGE_SIGNIN_URL",
    "BRIDGE_RATELIMIT_STORAGE_URL",
    "CRM_WEBHOOK_SECRET",
    "CRM_CALLBACK_SECRET",
    "BRIDGE_GEO_HEADER",
    "BRIDGE_GEOIP_DB",
)
ENV_BOOLS = ("BRIDGE_ALLOW_PRIVATE_TARGETS", "BRIDGE_PUBLIC_SIGNUP")
ENV_NUMBERS = {
    "BRIDGE_MAX_BODY_BYTES": int,
    "BRIDGE_FAILED_KEY_LIMIT": int,
    "BRIDGE_REGISTER_LIMIT": int,
    "BRIDGE_TRUSTED_PROXIES": int,
    "BRIDGE_FAILED_KEY_CACHE_SECONDS": float,
    "BRIDGE_ACCESS_KEY_CACHE_SECONDS": float,
    "BRIDGE_LEASE_SECONDS": float,
    "BRIDGE_WORKER_POLL_SECONDS": float,
    "BRIDGE_WORKER_NICE": int,
}


def load_environment(config: Config) -> None:
    for name in ENV_STRINGS:
        if os.environ.get(name):
            config[name] = os.environ[name]
    for name in ENV_BOOLS:
        if name in os.environ:
            config[name] = os.environ[name].strip().lower() in TRUTHY
    for name, cast in ENV_NUMBERS.items():
        if os.environ.get(name):
            config[name] = cast(os.environ[name])


def normalise_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def read_or_create_secret_key(instance_path: str) -> str:
    """The signing key: generated once into ``<instance>/secret_key`` with mode 0600."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def finalise(config: Config, instance_path: str) -> None:
    """Derived settings: secret key, database URL and engine options, body limit."""
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = read_or_create_secret_key(instance_path)
    url = config.get("SQLALCHEMY_DATABASE_URI") or config.get("DATABASE_URL")
    if not url:
        url = "sqlite:///" + str(Path(instance_path) / "bridge.sqlite3")
    url = normalise_database_url(url)
    config["SQLALCHEMY_DATABASE_URI"] = url
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if url.startswith("sqlite"):
        from bridge.database import SerialisedWriterConnection

        options.setdefault(
            "connect_args", {"timeout": 30, "check_same_thread": False, "factory": SerialisedWriterConnection}
        )
    else:
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    config["MAX_CONTENT_LENGTH"] = int(config["BRIDGE_MAX_BODY_BYTES"])
    if str(config.get("BRIDGE_BASE_URL") or "").lower().startswith("https://"):
        config["SESSION_COOKIE_SECURE"] = True  # served over https: the session cookie never leaves it
