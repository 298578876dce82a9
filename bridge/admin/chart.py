"""Deliveries per hour by status (counted in SQL), drawn as an inline SVG on the server: no JavaScript, no build
step, no external asset. The SVG scales to its container (``viewBox``), so it fits a phone.

Bars are stacked by status in ``STATUS_COLOURS`` order; each bar has a ``<title>`` (a tooltip
and what a screen reader reads) with the hour and its counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import func, select

from bridge.delivery.outbox import STATUSES
from bridge.extensions import db
from bridge.models import Delivery, utcnow

STATUS_COLOURS = {
    "succeeded": "#16a34a",
    "pending": "#3b82f6",
    "in_flight": "#6366f1",
    "failed": "#f59e0b",
    "dead": "#ef4444",
}
WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 36, 32, 16


def _nice_ceiling(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value`` (and at least 4)."""
    value = max(value, 4)
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def hourly_svg(buckets: Sequence[tuple[datetime, Mapping[str, int]]], statuses: Sequence[str]) -> Markup:
    total = sum(sum(counts.values()) for _, counts in buckets)
    top = _nice_ceiling(max((sum(counts.values()) for _, counts in buckets), default=0))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.72, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="Deliveries per hour by status, last {len(buckets)} hours: {total} in all">'
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="chart-axis" text-anchor="end">{int(top * fraction)}</text>'
        )
    for index, (hour, counts) in enumerate(buckets):
        x = LEFT + index * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        label = f"{hour:%H}:00 UTC: " + ", ".join(f"{counts.get(s, 0)} {s.replace('_', ' ')}" for s in statuses)
        parts.append(f"<g><title>{escape(label)}</title>")
        parts.append(f'<rect x="{x:.1f}" y="{TOP}" width="{bar_w:.1f}" height="{plot_h}" class="chart-slot"/>')
        for status in statuses:
            number = counts.get(status, 0)
            if not number:
                continue
            height = plot_h * number / top
            y -= height
            colour = STATUS_COLOURS.get(status, "#94a3b8")
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{height:.1f}" fill="{colour}"/>')
        parts.append("</g>")
        if index % 3 == 0:
            centre = x + bar_w / 2
            minor = " chart-minor" if index % 6 else ""  # hidden on a phone, where labels are larger
            label = f'x="{centre:.1f}" y="{HEIGHT - 6}" class="chart-axis{minor}" text-anchor="middle"'
            parts.append(f"<text {label}>{hour:%H}h</text>")
    parts.append("</svg>")
    # Every interpolated value is a number or went through ``escape``.
    return Markup("".join(parts))  # noqa: S704


def deliveries_per_hour(now: datetime | None = None, hours: int = 24) -> list[tuple[datetime, dict[str, int]]]:
    """Deliveries created in each of the last ``hours`` hours, by their status now: oldest hour
    first, every hour present (empty ones with zeros). Counted in SQL per hour and status."""
    now = now or utcnow()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    if db.engine.dialect.name == "postgresql":
        bucket: Any = func.date_trunc("hour", Delivery.created_at)
    else:
        bucket = func.strftime("%Y-%m-%d %H:00:00", Delivery.created_at)
    rows = db.session.execute(
        select(bucket, Delivery.status, func.count())
        .where(Delivery.created_at >= start, Delivery.created_at < end)
        .group_by(bucket, Delivery.status)
    )
    hours_list = [start + timedelta(hours=i) for i in range(hours)]
    counts: dict[datetime, dict[str, int]] = {hour: dict.fromkeys(STATUSES, 0) for hour in hours_list}
    for hour, status, number in rows:
        key = hour if isinstance(hour, datetime) else datetime.fromisoformat(str(hour))
        key = key.replace(tzinfo=None)
        if key in counts and status in counts[key]:
            counts[key][status] += number
    return [(hour, counts[hour]) for hour in hours_list]
