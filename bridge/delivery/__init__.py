"""Delivery: getting every outbound event to its CRM, exactly once as far as receivers can tell.

Owns the transactional outbox (rows written in the caller's transaction), claiming due rows with
leases, running attempts and recording their outcomes, the retry schedule, the worker and its
process supervisor, the job-handler registry and the operator actions on deliveries (list, retry, replay).

May use: ``bridge.connections`` (to build a connection's adapter), ``bridge.outbound`` (the HTTP
client) and the app's core (models, database, crypto). Knows no user rules: what a job does to a
user is registered by the layers above through ``bridge.delivery.jobs.job_handler``.
"""
