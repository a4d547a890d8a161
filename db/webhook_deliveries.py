"""The webhook outbox's sender side: take due deliveries, record how each attempt went, read the log.

A sender takes deliveries with FOR UPDATE SKIP LOCKED and marks them taken (``locked_until``) in a
transaction of its own, then POSTs them outside any transaction, then records the outcome. Several
beat processes may send side by side without sending one delivery twice at once; a sender that dies
mid-request leaves the delivery to be sent again when its hold ends (at least once: receivers
deduplicate on ``webhook-id``). Every time is the database's (scheduler/deliveries.py reads it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from anvil.domain.webhooks import next_attempt
from db.models import Webhook, WebhookDelivery


@dataclass(frozen=True)
class Due:
    """A delivery taken for sending, with what the sender needs of its subscription."""

    id: uuid.UUID
    event: dict[str, Any]
    url: str
    format: str
    webhook: Webhook


def take_due(session: Session, *, now: datetime, limit: int, hold: timedelta) -> list[Due]:
    d = WebhookDelivery
    rows = session.execute(
        select(d, Webhook)
        .join(Webhook, Webhook.id == d.webhook_id)
        .where(
            d.status == "pending",
            d.next_attempt_at <= now,
            or_(d.locked_until.is_(None), d.locked_until <= now),
            Webhook.enabled.is_(True),
        )
        .order_by(d.next_attempt_at, d.id)
        .limit(limit)
        .with_for_update(of=d, skip_locked=True)
    ).all()
    if rows:
        session.execute(
            update(d).where(d.id.in_([row[0].id for row in rows])).values(locked_until=now + hold)
        )
    return [Due(delivery.id, delivery.event, hook.url, hook.format, hook) for delivery, hook in rows]


def record_attempt(
    session: Session,
    delivery_id: uuid.UUID,
    *,
    now: datetime,
    status_code: int | None,
    latency_ms: int,
    error: str | None,
    retry_for: timedelta,
    first_wait_s: float,
) -> str | None:
    """Record one attempt; returns the delivery's status afterwards (None: already settled)."""
    delivery = session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
    )
    if delivery is None or delivery.status != "pending":
        return None
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.locked_until = now, None
    delivery.last_status_code, delivery.last_latency_ms = status_code, latency_ms
    delivery.last_error = error
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.delivered_at = "delivered", now
    else:
        retry_at = next_attempt(delivery.created_at, delivery.attempts, now, retry_for, first_wait_s)
        if retry_at is None:
            delivery.status = "failed"
        else:
            delivery.next_attempt_at = retry_at
    return delivery.status


def log(
    session: Session, webhook_id: uuid.UUID, *, limit: int, before: datetime | None = None
) -> list[WebhookDelivery]:
    """A subscription's deliveries, newest first (``before``: created before that time)."""
    d = WebhookDelivery
    statement = select(d).where(d.webhook_id == webhook_id)
    if before is not None:
        statement = statement.where(d.created_at < before)
    return list(session.scalars(statement.order_by(d.created_at.desc(), d.id.desc()).limit(limit)))


def redeliver(session: Session, delivery: WebhookDelivery, *, now: datetime) -> None:
    """Send a delivery again now (a failed one, or a delivered one a receiver lost)."""
    delivery.status, delivery.next_attempt_at, delivery.locked_until = "pending", now, None
    delivery.created_at = now  # a fresh retry window
