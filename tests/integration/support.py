"""Plain helpers for the integration tests."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import redis
from httpx import Response
from sqlalchemy import func, select

from db.models import Base
from db.session import new_session
from workers.celery_app import RUN_TASK

PROBLEM = "application/problem+json"


def count_rows() -> dict[str, int]:
    """Row counts of every table a request could write to (all but users), on a connection of its own."""
    with new_session() as s:
        return {
            table.name: s.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
            if table.name != "users"
        }


def generic_case_body(name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name or f"case-{uuid.uuid4().hex[:8]}",
        "kind": "generic",
        "spec": {"workspace": "demo", "steps": [{"run": ["true"]}]},
        **extra,
    }


def problem(response: Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Asserts ``response`` is an RFC 9457 problem with ``status`` (and ``field``); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def published_ids(client: redis.Redis, queue: str) -> list[str]:
    """Execution ids of the Celery messages waiting on ``queue`` in Redis, oldest first."""
    ids = []
    # kombu's Redis transport LPUSHes JSON envelopes; the body is base64 JSON [args, kwargs, embed].
    for raw in reversed(client.lrange(queue, 0, -1)):
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == RUN_TASK
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        assert kwargs == {} and len(args) == 1, "a message carries only the execution id"
        ids.append(args[0])
    return ids
