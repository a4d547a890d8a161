"""Request and response bodies of a test's quarantine (api/routes/quarantine.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from anvil.domain.specs.base import Strict
from db.models import Test
from db.quarantine import is_quarantined

MAX_DAYS = 3650
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class QuarantineCreate(Strict):
    reason: Reason = Field(description="why the test is quarantined (required; kept in the audit)")
    expires_at: datetime | None = Field(
        default=None, description="when the quarantine ends by itself (future; without a zone: UTC)"
    )
    expires_in_days: float | None = Field(
        default=None, gt=0, le=MAX_DAYS, description="or: it ends this many days from now"
    )

    def expiry(self, now: datetime) -> datetime | None:
        if self.expires_in_days is not None:
            return now + timedelta(days=self.expires_in_days)
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            return self.expires_at.replace(tzinfo=UTC)
        return self.expires_at


class QuarantineRelease(Strict):
    reason: Reason | None = Field(default=None, description="why it is lifted (kept in the audit)")


class QuarantineState(BaseModel):
    """A test and whether it is under quarantine now: who put it there, why, until when (the
    fields GET /api/v1/tests shows under the same names)."""

    id: uuid.UUID
    test_case_id: uuid.UUID
    key: str
    name: str
    quarantined: bool = Field(description="under quarantine now (not lifted, not expired)")
    quarantined_at: datetime | None = None
    quarantined_by: str | None = None
    quarantine_reason: str | None = None
    quarantine_expires_at: datetime | None = None

    @classmethod
    def of(cls, test: Test, *, now: datetime) -> QuarantineState:
        state = cls(
            id=test.id, test_case_id=test.test_case_id, key=test.key, name=test.name, quarantined=False
        )
        if not is_quarantined(test, now=now):  # never quarantined, lifted, or expired
            return state
        return state.model_copy(
            update={
                "quarantined": True,
                "quarantined_at": test.quarantined_at,
                "quarantined_by": test.quarantined_by,
                "quarantine_reason": test.quarantine_reason,
                "quarantine_expires_at": test.quarantine_expires_at,
            }
        )


class QuarantineEventPublic(BaseModel):
    """One change of a test's quarantine: quarantined (or updated), released, or expired."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    test_id: uuid.UUID
    action: str
    reason: str | None
    expires_at: datetime | None
    actor: str = Field(description="the user's name, or system for an expiry")
    at: datetime
