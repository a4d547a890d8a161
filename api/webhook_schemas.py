"""Request and response bodies of webhook subscriptions and their deliveries (api/routes/webhooks.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from anvil.domain.specs.base import Strict
from anvil.domain.states import FINISHED, Status
from anvil.domain.webhooks import EVENTS

EventName = Literal["execution.finished", "test.flaky_detected", "test.quarantine_changed"]
Format = Literal["standard", "slack", "teams"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Ident = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
FINAL = sorted(s.value for s in FINISHED if s is not Status.RETRYING)
assert set(EVENTS) == set(EventName.__args__)  # type: ignore[attr-defined]


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. https://ci.example.com/hooks")
    return value


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _statuses(values: list[str]) -> list[str]:
    wrong = [v for v in values if v not in FINAL]
    if wrong:
        raise ValueError(f"not a final status: {', '.join(wrong)} (one of {', '.join(FINAL)})")
    return _unique(values)


Url = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(_url),
    Field(description="where to POST (http or https); kept encrypted, shown only as scheme://host/…"),
]
Events = Annotated[
    list[EventName], AfterValidator(_unique), Field(min_length=1, description="the events to send")
]
Idents = Annotated[list[Ident], AfterValidator(_unique), Field(max_length=100)]
Statuses = Annotated[list[str], AfterValidator(_statuses), Field(max_length=20)]


class WebhookFilters(Strict):
    cases: Idents | None = Field(
        default=None, description="execution.finished (and test events) of these cases only (ids or names)"
    )
    suites: Idents | None = Field(
        default=None, description="execution.finished of these suites only (ids or names)"
    )
    schedules: Idents | None = Field(
        default=None, description="execution.finished of runs these schedules fired (ids or names)"
    )
    statuses: Statuses | None = Field(
        default=None, description="execution.finished with these final statuses only"
    )
    only_changes: bool | None = Field(
        default=None,
        description="execution.finished only when the result changed from the previous run of the same "
        "case or suite on the same branch: newly failing or fixed",
    )


class WebhookCreate(WebhookFilters):
    url: Url
    events: Events
    name: Name | None = Field(default=None, description="a label; default: the URL's host")
    format: Format = Field(
        default="standard",
        description="standard: the event as JSON; slack or teams: a readable message for that chat's "
        "incoming webhook",
    )


class WebhookUpdate(WebhookFilters):
    url: Url | None = None
    events: Events | None = None
    name: Name | None = None
    format: Format | None = None
    enabled: bool | None = Field(default=None, description="false: stop sending (deliveries wait)")


class DeliveryCounts(BaseModel):
    pending: int = 0
    delivered: int = 0
    failed: int = 0


class WebhookPublic(BaseModel):
    id: uuid.UUID
    name: str
    url: str = Field(description="redacted: scheme, host and port")
    format: str
    events: list[str]
    filters: dict[str, Any] = Field(description="case_ids, suite_ids, schedule_ids, statuses, only_changes")
    enabled: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    deliveries: DeliveryCounts


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="the signing secret (whsec_...), shown only now: verify deliveries with it "
        "(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature)"
    )


class DeliveryPublic(BaseModel):
    id: uuid.UUID = Field(description="also the webhook-id header: deduplicate on it")
    event_type: str
    status: str = Field(description="pending, delivered, or failed (gave up after the retry window)")
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    delivered_at: datetime | None
    event: dict[str, Any]


class DeliveryQueued(BaseModel):
    delivery_id: uuid.UUID
