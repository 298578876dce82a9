"""Outbound HTTP: the one client every request to a CRM goes through.

Owns the address policy (SSRF rules, allowlist, pinning to the checked address), timeouts,
response caps, and redaction of secrets from everything recorded or logged.

May use: ``crm_adapters`` (its response and error types) and nothing else of ``bridge``.
"""
