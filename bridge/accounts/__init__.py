"""Accounts: the site's own users and everything that changes them from this side.

Owns matching, creating and updating users; their tags, usernames, passwords and roles;
local registration (the API's and the ``/register`` page's), profile edits, one-time login links,
the welcome mail, the CRM activity timeline, and the job handlers that push users out to CRMs.

May use: ``bridge.delivery`` (to queue pushes and register job handlers), ``bridge.connections``,
``bridge.outbound`` and the app's core. Never imports the inbound webhook or the surfaces.
"""
