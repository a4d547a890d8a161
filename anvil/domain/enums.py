"""Vocabularies stored as strings and checked by constraints (portable to SQLite)."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"
    DEFERRED = "DEFERRED"

    @property
    def queue(self) -> str:
        return self.value.lower()

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


QUEUES: tuple[str, ...] = tuple(p.queue for p in Priority)


class TriggerKind(StrEnum):
    MANUAL = "manual"
    API = "api"
    CI = "ci"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    REPAIR = "repair"
    CHILD = "child"
    AGENT = "agent"
    SHARD = "shard"  # one part of a case's tests, run beside the others (anvil/domain/shards.py)


class Role(StrEnum):
    ADMIN = "admin"
    MAINTAINER = "maintainer"
    TESTER = "tester"
    VIEWER = "viewer"

    @property
    def level(self) -> int:
        return {"viewer": 0, "tester": 1, "maintainer": 2, "admin": 3}[self.value]


class StepStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"
    TIMEOUT = "timeout"
    XFAILED = "xfailed"
    XPASSED = "xpassed"
    UNDEFINED = "undefined"
    PENDING = "pending"
    BLOCKED = "blocked"
    NOT_RUN = "not_run"
    CANCELLED = "cancelled"
