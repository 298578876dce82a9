"""Inbound endpoints: the WP Fusion contract at ``/`` and the CRM activity webhook."""

from bridge.inbound.activity import bp as activity_bp
from bridge.inbound.views import bp as inbound_bp

__all__ = ["activity_bp", "inbound_bp"]
