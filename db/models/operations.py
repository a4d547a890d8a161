"""What keeps the platform running: the scheduler's lease, the worker registry, webhooks and their
deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base
from db.types import JSONType, utcnow


class SchedulerLease(Base):
    """Which beat process acts on the tick right now (several may run; one holds the lease)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column()


class Worker(Base):
    """A worker process, kept fresh by its heartbeat (db/workers.py, workers/registry.py): how many
    test slots it has and which queues it consumes. Its state (live, stale, stopped) is computed
    from ``heartbeat_at`` and ``stopped_at`` (anvil/domain/workers.py)."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint("slots > 0", name="slots_positive"),
        # The running ones, by last heartbeat: what capacity reads (live_slots) scan.
        Index(
            "ix_workers_live",
            "heartbeat_at",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The Celery node name (celery@host, w1@host): one row per name, taken over by a restart.
    name: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    # Queue names it consumes, highest priority first.
    queues: Mapped[list[str]] = mapped_column(JSONType)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    heartbeat_at: Mapped[datetime] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column()


class Webhook(Base):
    """A subscription: where to POST which events, in which format, signed with its own secret."""

    __tablename__ = "webhooks"
    __table_args__ = (CheckConstraint("format IN ('standard', 'slack', 'teams')", name="format"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    events: Mapped[list[str]] = mapped_column(JSONType)
    # case_ids, suite_ids, schedule_ids, statuses, only_changes (anvil/domain/webhooks.matches).
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The signing secret (whsec_...), a Fernet token under ANVIL_SECRETS_KEY bound to this id.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one row per (subscription, event), written in the event's own transaction, so a
    rolled-back change sends nothing and a committed one is never lost. Its id is the ``webhook-id``
    a receiver deduplicates on; the row is also the subscription's delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    # The event envelope ({"type", "timestamp", "data"}); the body is made from it when sent.
    event: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sender took it until then (a sender that dies mid-request leaves it to another afterwards).
    locked_until: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
