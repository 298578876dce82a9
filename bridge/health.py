"""Operations endpoints: ``/healthz`` and ``/metrics`` (CONTRACT.md §10).

Both read the database rather than process memory, so any web process answers for the whole
deployment (every gunicorn worker, every ``crm-bridge worker`` process): the metrics come from a
custom Prometheus collector that queries the inbound log and the outbox on each scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import case, func, select, text

from bridge.database import is_sqlite
from bridge.delivery import deliveries, heartbeats
from bridge.extensions import db
from bridge.models import Delivery, WebhookEvent, utcnow

bp = Blueprint("health", __name__)
log = logging.getLogger("bridge.health")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


# CONTRACT §10: when /healthz says degraded, and the code the body names it by.
WORKER_SILENT_SECONDS = heartbeats.WORKER_STALE_SECONDS
DIED_WITHIN = timedelta(hours=1)
QUEUE_DELAY_SECONDS = 300


def health_report() -> tuple[dict[str, Any], int]:
    """``ok``, or ``degraded`` with ``reasons`` naming each rule of CONTRACT §10 that holds:
    ``no_worker`` (no worker beat in 60 s), ``delivery_died`` (a delivery died in the last
    hour), ``queue_delayed`` (the oldest due delivery has waited over 5 minutes),
    ``database_unavailable`` (then 503: nothing else can be known)."""
    try:
        db.session.execute(text("SELECT 1"))
        counts = deliveries.queue_counts()
        heartbeat, alive = heartbeats.liveness()
        died = deliveries.died_since(utcnow() - DIED_WITHIN)
        waited = deliveries.oldest_due_wait_seconds()
    except Exception as exc:
        db.session.rollback()
        log.warning("health check: database unavailable: %s", exc.__class__.__name__)
        return {
            "status": "degraded",
            "reasons": ["database_unavailable"],
            "database": "unavailable",
            "worker": {"last_heartbeat_s": None, "alive": None},
            "queue": {"pending": None, "dead": None},
        }, 503
    db.session.commit()
    reasons = []
    if not alive:
        reasons.append("no_worker")
    if died:
        reasons.append("delivery_died")
    if waited is not None and waited > QUEUE_DELAY_SECONDS:
        reasons.append("queue_delayed")
    return {
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "database": "ok",
        "worker": {"last_heartbeat_s": heartbeat, "alive": alive},
        "queue": {
            "pending": counts["pending"] + counts["failed"],
            "dead": counts["dead"],
            "died_last_hour": died,
            "oldest_due_wait_s": waited,
        },
    }, 200


def _seconds_between(later: Any, earlier: Any) -> Any:
    if is_sqlite():
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


class DatabaseCollector:
    """Prometheus collector reading the shared database on each scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        finally:
            db.session.rollback()

    def _collect(self) -> Iterator[Metric]:
        inbound = CounterMetricFamily(
            "crm_bridge_inbound_requests", "Inbound webhook requests by action and status.", labels=["action", "status"]
        )
        rows = db.session.execute(
            select(WebhookEvent.action, WebhookEvent.status_code, func.count(WebhookEvent.id)).group_by(
                WebhookEvent.action, WebhookEvent.status_code
            )
        )
        for action, status, count in rows:
            inbound.add_metric([action or "none", str(status)], int(count))
        yield inbound

        by_status = GaugeMetricFamily(
            "crm_bridge_deliveries", "Outbox rows by kind and status.", labels=["kind", "status"]
        )
        for kind, status, count in db.session.execute(
            select(Delivery.kind, Delivery.status, func.count(Delivery.id)).group_by(Delivery.kind, Delivery.status)
        ):
            by_status.add_metric([kind, status], int(count))
        yield by_status

        counts = deliveries.queue_counts()
        yield GaugeMetricFamily(
            "crm_bridge_queue_depth",
            "Deliveries waiting to be delivered (pending, failed awaiting retry, in flight).",
            value=counts["pending"] + counts["failed"] + counts["in_flight"],
        )
        oldest = db.session.scalar(
            select(func.min(Delivery.created_at)).where(Delivery.status.in_(("pending", "failed", "in_flight")))
        )
        yield GaugeMetricFamily(
            "crm_bridge_queue_oldest_age_seconds",
            "Age of the oldest undelivered row (0 when the queue is empty).",
            value=(utcnow() - oldest).total_seconds() if oldest else 0.0,
        )
        yield self._latency()
        age, alive = heartbeats.liveness()
        yield GaugeMetricFamily(
            "crm_bridge_worker_last_heartbeat_seconds",
            "Seconds since a delivery worker last beat (-1: never).",
            value=age if age is not None else -1.0,
        )
        yield GaugeMetricFamily(
            "crm_bridge_workers_alive",
            f"Delivery workers (processes, inline threads) that beat in the last {heartbeats.WORKER_STALE_SECONDS} s.",
            value=alive,
        )

    def _latency(self) -> Metric:
        """Time from queueing to delivery of succeeded rows, as a cumulative histogram."""
        seconds = _seconds_between(Delivery.delivered_at, Delivery.created_at)
        columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS]
        columns += [func.count(Delivery.id), func.coalesce(func.sum(seconds), 0.0)]
        row = db.session.execute(
            select(*columns).where(Delivery.status == "succeeded", Delivery.delivered_at.is_not(None))
        ).one()
        total = int(row[-2] or 0)
        buckets = [(str(bound), int(value or 0)) for bound, value in zip(LATENCY_BUCKETS, row[:-2], strict=True)]
        buckets.append(("+Inf", total))
        return HistogramMetricFamily(
            "crm_bridge_delivery_latency_seconds",
            "Seconds from queueing to successful delivery.",
            buckets=buckets,
            sum_value=float(row[-1] or 0.0),
        )


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    report, status = health_report()
    return jsonify(report), status


@bp.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())  # type: ignore[arg-type]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
