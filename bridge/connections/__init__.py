"""Connections: one CRM account each, with its settings, access keys and adapter.

Owns creating, changing and removing connections, their settings (defaults, validation, secrets
encrypted at rest) and the per-process settings cache, the adapter registry (entry points),
building an adapter on the outbound client, OAuth token refresh coordination, and the dry run.

May use: ``bridge.outbound`` (the HTTP client), ``crm_adapters`` and the app's core. Knows nothing
of users or deliveries.
"""
