"""Webhook subscriptions (maintainer or admin): create, list, change, delete, their delivery log,
a test event, and sending a delivery again.

Events are written to an outbox in the transaction that makes them happen and POSTed by the beat
(scheduler/deliveries.py), signed per the Standard Webhooks spec with the subscription's secret,
which is shown once, when the subscription is created. The URL is kept encrypted too (a chat's
incoming-webhook URL is a credential) and shown redacted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.webhooks import TEST_EVENT
from anvil.errors import InvalidInput, NotFound
from api.deps import Maintainer, SessionDep, SettingsDep
from api.schemas import Page
from api.webhook_schemas import (
    DeliveryCounts,
    DeliveryPublic,
    DeliveryQueued,
    WebhookCreate,
    WebhookCreated,
    WebhookFilters,
    WebhookPublic,
    WebhookUpdate,
)
from db import webhook_deliveries, webhooks
from db.models import Schedule, Webhook, WebhookDelivery
from db.scopes import find_case, find_suite
from db.secrets import box_for
from db.sql import read_db_now
from db.types import utcnow

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
WebhookId = Annotated[uuid.UUID, Path(description="the subscription's id")]


def _public(session: Session, hook: Webhook) -> WebhookPublic:
    counts: dict[str, int] = dict(
        session.execute(
            select(WebhookDelivery.status, func.count())
            .where(WebhookDelivery.webhook_id == hook.id)
            .group_by(WebhookDelivery.status)
        )
        .tuples()
        .all()
    )
    return WebhookPublic(
        id=hook.id,
        name=hook.name,
        url=hook.url,
        format=hook.format,
        events=hook.events,
        filters=hook.filters,
        enabled=hook.enabled,
        created_by=hook.created_by,
        created_at=hook.created_at,
        updated_at=hook.updated_at,
        deliveries=DeliveryCounts(**counts),
    )


def _ids(session: Session, idents: Sequence[str], field: str, find: Any) -> list[str]:
    found = []
    for i, ident in enumerate(idents):
        try:
            found.append(str(find(session, ident).id))
        except NotFound as exc:
            raise InvalidInput(exc.detail, field=f"body.{field}.{i}") from None
    return found


def _schedule(session: Session, ident: str) -> Schedule:
    try:
        schedule = session.get(Schedule, uuid.UUID(ident))
    except ValueError:
        schedule = session.scalar(select(Schedule).where(Schedule.name == ident))
    if schedule is None:
        raise NotFound(f"no schedule with id or name {ident!r}")
    return schedule


def _filters(session: Session, body: WebhookFilters, current: dict[str, Any]) -> dict[str, Any]:
    """The stored filters: ``current`` with what ``body`` gives replaced (names resolved to ids)."""
    filters = dict(current)
    given = body.model_fields_set
    if "cases" in given:
        filters["case_ids"] = _ids(session, body.cases or [], "cases", find_case)
    if "suites" in given:
        filters["suite_ids"] = _ids(session, body.suites or [], "suites", find_suite)
    if "schedules" in given:
        filters["schedule_ids"] = _ids(session, body.schedules or [], "schedules", _schedule)
    if "statuses" in given:
        filters["statuses"] = body.statuses or []
    if "only_changes" in given:
        filters["only_changes"] = bool(body.only_changes)
    return {k: v for k, v in filters.items() if v}


@router.post("", response_model=WebhookCreated, status_code=201)
def create_webhook(
    body: WebhookCreate, user: Maintainer, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Subscribe a URL to events. The answer holds the signing secret, shown this once."""
    box = box_for(settings)
    with session.begin():
        hook, secret = webhooks.create(
            session,
            name=body.name or (body.url.split("//", 1)[-1].split("/", 1)[0]),
            url=body.url,
            fmt=body.format,
            events=body.events,
            filters=_filters(session, body, {}),
            created_by=user.id,
            box=box,
        )
        public = _public(session, hook)
    return WebhookCreated(**public.model_dump(), secret=secret)


@router.get("", response_model=Page[WebhookPublic])
def list_webhooks(user: Maintainer, session: SessionDep) -> Page[WebhookPublic]:
    with session.begin():
        return Page(items=[_public(session, h) for h in webhooks.list_all(session)], next_cursor=None)


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: WebhookId, user: Maintainer, session: SessionDep) -> WebhookPublic:
    with session.begin():
        return _public(session, webhooks.get(session, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookPublic)
def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, user: Maintainer, session: SessionDep, settings: SettingsDep
) -> WebhookPublic:
    """Change what is given; filters given replace those filters (``[]`` clears one)."""
    given = body.model_fields_set
    for field in ("url", "events", "name", "format", "enabled"):
        if field in given and getattr(body, field) is None:
            raise InvalidInput(f"{field} may not be null", field=f"body.{field}")
    with session.begin():
        hook = webhooks.get(session, webhook_id, lock=True)
        if "url" in given:
            box = box_for(settings)
            _, secret = webhooks.credentials(hook, box)
            webhooks.set_credentials(hook, box, url=str(body.url), secret=secret)
        for field in ("events", "name", "format", "enabled"):
            if field in given:
                setattr(hook, field, getattr(body, field))
        hook.filters = _filters(session, body, hook.filters or {})
        hook.updated_at = utcnow()
        session.flush()
        return _public(session, hook)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: WebhookId, user: Maintainer, session: SessionDep) -> Response:
    """Delete the subscription and its delivery log; what was not sent yet is not sent."""
    with session.begin():
        session.delete(webhooks.get(session, webhook_id, lock=True))
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    webhook_id: WebhookId,
    user: Maintainer,
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500, description="at most this many, newest first"),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> Page[DeliveryPublic]:
    """The delivery log: each event sent to this subscription, its attempts, last status code and
    latency."""
    before = _cursor(cursor)
    with session.begin():
        webhooks.get(session, webhook_id)
        rows = webhook_deliveries.log(session, webhook_id, limit=limit + 1, before=before)
        items = [DeliveryPublic.model_validate(row, from_attributes=True) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items=items, next_cursor=items[-1].created_at.isoformat() if more else None)


def _cursor(cursor: str | None) -> datetime | None:
    if cursor is None:
        return None
    try:
        return datetime.fromisoformat(cursor)
    except ValueError:
        raise InvalidInput("not a cursor this endpoint gave", field="query.cursor") from None


@router.post("/{webhook_id}/test", response_model=DeliveryQueued, status_code=202)
def send_test_event(webhook_id: WebhookId, user: Maintainer, session: SessionDep) -> DeliveryQueued:
    """Send a ``webhook.test`` event to this subscription alone (disabled or not, whatever its
    events and filters; it is sent while the subscription is enabled)."""
    with session.begin():
        hook = webhooks.get(session, webhook_id)
        data = {
            "webhook_id": str(hook.id),
            "requested_by": user.username,
            "message": "This subscription works.",
        }
        (delivery_id,) = webhooks.enqueue(session, TEST_EVENT, data, only=hook.id)
    return DeliveryQueued(delivery_id=delivery_id)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryQueued, status_code=202
)
def redeliver(
    webhook_id: WebhookId,
    user: Maintainer,
    session: SessionDep,
    delivery_id: uuid.UUID = Path(description="the delivery's id"),
) -> DeliveryQueued:
    """Send a delivery again now (one that failed, or one its receiver lost), with a fresh retry window."""
    with session.begin():
        delivery = session.scalar(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id)
            .with_for_update()
        )
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id} of webhook {webhook_id}", field="delivery_id")
        webhook_deliveries.redeliver(session, delivery, now=read_db_now(session))
    return DeliveryQueued(delivery_id=delivery_id)
