"""Webhook subscriptions, and the outbox rows written for their events.

``enqueue`` is called inside the transaction that makes the event happen (a run's final status,
a quarantine, a test found flaky: db/webhook_events.py), so the deliveries commit or roll back with
it. The URL and the signing secret are stored encrypted with the test secrets' key (db/secrets.py),
bound to the subscription's id (a ciphertext copied to another row does not decrypt there): a chat's
incoming-webhook URL is itself a credential. The ``url`` column keeps only a redacted form to show.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from anvil.domain.webhooks import envelope, matches, new_secret, redacted
from anvil.errors import NotFound
from db.models import Webhook, WebhookDelivery
from db.secrets import decrypt, encrypt
from db.types import utcnow


def _secret_name(webhook_id: uuid.UUID) -> str:
    return f"webhook:{webhook_id}"


def create(
    session: Session,
    *,
    name: str,
    url: str,
    fmt: str,
    events: Sequence[str],
    filters: Mapping[str, Any],
    created_by: uuid.UUID | None,
    box: Fernet,
) -> tuple[Webhook, str]:
    """A new subscription and its signing secret (shown once, to its creator)."""
    webhook_id, secret, now = uuid.uuid4(), new_secret(), utcnow()
    hook = Webhook(
        id=webhook_id,
        name=name,
        format=fmt,
        events=list(events),
        filters=dict(filters),
        enabled=True,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    set_credentials(hook, box, url=url, secret=secret)
    session.add(hook)
    session.flush()
    return hook, secret


def set_credentials(hook: Webhook, box: Fernet, *, url: str, secret: str) -> None:
    hook.url = redacted(url)
    token = json.dumps({"url": url, "secret": secret})
    hook.secret_encrypted = encrypt(box, name=_secret_name(hook.id), value=token)


def credentials(hook: Webhook, box: Fernet) -> tuple[str, str]:
    """The subscription's real URL and signing secret."""
    stored = json.loads(decrypt(box, name=_secret_name(hook.id), token=hook.secret_encrypted))
    return stored["url"], stored["secret"]


def get(session: Session, webhook_id: uuid.UUID, *, lock: bool = False) -> Webhook:
    statement = select(Webhook).where(Webhook.id == webhook_id)
    hook = session.scalar(statement.with_for_update() if lock else statement)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    return hook


def list_all(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.created_at, Webhook.id)))


def listening(session: Session, event_type: str, *, only: uuid.UUID | None = None) -> list[Webhook]:
    """The enabled subscriptions to ``event_type`` (a handful: read whole, filtered here); ``only``:
    that subscription, whatever its state and events."""
    if only is not None:  # the test event: written for a disabled one too, sent once it is enabled
        return list(session.scalars(select(Webhook).where(Webhook.id == only)))
    statement = select(Webhook).where(Webhook.enabled.is_(True))
    return [hook for hook in session.scalars(statement) if event_type in hook.events or only is not None]


def enqueue(
    session: Session,
    event_type: str,
    data: Mapping[str, Any],
    *,
    hooks: Sequence[Webhook] | None = None,
    only: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Write one delivery per subscription that hears this event; returns their ids.

    ``hooks``: the listeners, when the caller already read them; ``only``: that subscription alone
    (the test event), whatever its events and filters.
    """
    if hooks is None:
        hooks = listening(session, event_type, only=only)
    now = utcnow()
    event = envelope(event_type, now, data)
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "webhook_id": hook.id,
            "event_type": event_type,
            "event": event,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for hook in hooks
        if only is not None or matches(hook.filters or {}, event_type, data)
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    return [row["id"] for row in rows]
