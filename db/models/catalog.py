"""What can be run: test cases, suites, their schedules and secrets."""

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
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from anvil.domain.enums import Priority
from db.models.base import Base, check_in
from db.types import JSONType, utcnow


class TestCase(Base):
    __tablename__ = "test_cases"
    __table_args__ = (
        CheckConstraint("timeout_s > 0", name="timeout_positive"),
        Index(
            "uq_test_cases_live_name",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )
    __test__ = False  # not a pytest class

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    timeout_s: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    # {"max_retries", "retry_on", "backoff_base_s", "backoff_cap_s", "jitter"}; None = server defaults.
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Soft delete: executions keep pointing at the case they ran.
    deleted_at: Mapped[datetime | None] = mapped_column()
    # Changed-files selection: glob of source paths -> the tests they select ({"src/pay/**": [...]}).
    file_map: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class TestSuite(Base):
    __tablename__ = "test_suites"
    __table_args__ = (
        CheckConstraint(check_in("default_priority", Priority), name="default_priority"),
        Index(
            "uq_test_suites_live_name",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )
    __test__ = False

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # Members: explicit case ids, and/or every live case carrying any of these tags.
    case_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    fail_fast: Mapped[bool] = mapped_column(Boolean, default=False)
    default_priority: Mapped[str] = mapped_column(String(16), default="NORMAL")
    # Overrides its members' case policies when set.
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column()
    file_map: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Quality gate rules its runs are judged by when they finish (anvil/domain/gates.py).
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Schedule(Base):
    """A cron schedule firing a case or a suite (e.g. a nightly suite)."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(check_in("priority", Priority), name="priority"),
        CheckConstraint("overlap IN ('skip', 'allow', 'cancel_previous')", name="overlap"),
        CheckConstraint("(test_case_id IS NULL) <> (test_suite_id IS NULL)", name="one_target"),
        UniqueConstraint("name", name="uq_schedules_name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    test_case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_cases.id"))
    test_suite_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_suites.id"))
    priority: Mapped[str] = mapped_column(String(16), default="NORMAL")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the system disabled it (its case or suite was deleted); cleared when it is enabled again.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    overlap: Mapped[str] = mapped_column(String(16), default="skip")
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The latest slot fired (or deliberately passed over); slots at or before it never fire again.
    last_slot_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TestSecret(Base):
    """A value tests need (a deploy token), named in specs' env, stored encrypted (db/secrets.py)."""

    __tablename__ = "test_secrets"
    __table_args__ = (UniqueConstraint("name", name="uq_test_secrets_name"),)
    __test__ = False  # not a pytest class

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    # A Fernet token (URL-safe base64) of the name and the value; never the plaintext.
    value_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
