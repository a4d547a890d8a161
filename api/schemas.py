"""Request and response bodies, apart from the ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from db.enums import CaseKind, Priority, TriggerKind

T = TypeVar("T")
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestCaseCreate(Strict):
    __test__ = False
    name: Name
    kind: CaseKind = CaseKind.GENERIC
    spec: dict[str, Any]
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    timeout_s: int | None = Field(
        default=None, gt=0, description="whole-test timeout; server default if omitted"
    )
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class TestCaseUpdate(Strict):
    __test__ = False
    name: Name | None = None
    spec: dict[str, Any] | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    timeout_s: int | None = Field(default=None, gt=0)
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class TestCasePublic(BaseModel):
    __test__ = False
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    kind: str
    spec: dict[str, Any]
    tags: list[str]
    timeout_s: int
    description: str | None
    version: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class CaseExecutionCreate(Strict):
    test_case_id: uuid.UUID
    priority: Priority = Priority.NORMAL
    run_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    trigger_kind: TriggerKind = TriggerKind.API
    params: dict[str, Any] = Field(default_factory=dict)


class StepPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    attempt: int
    name: str
    keyword: str | None
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    output: str | None
    output_truncated: bool
    error: str | None
    details: dict[str, Any]


class TransitionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    attempt: int
    from_status: str | None
    to_status: str
    at: datetime
    actor: str
    reason: str | None


class ExecutionPublic(BaseModel):
    id: uuid.UUID
    test_case_id: uuid.UUID | None
    test_case_name: str | None
    kind: str | None
    status: str
    priority: str
    attempt: int
    max_attempts: int
    trigger_kind: str
    correlation_id: uuid.UUID
    parent_execution_id: uuid.UUID | None
    run_id: str | None
    requested_by: uuid.UUID | None
    params: dict[str, Any]
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    run_at: datetime | None
    duration_s: float | None
    worker: str | None
    summary: dict[str, Any]
    error: str | None
    assigned_to: uuid.UUID | None = None
    steps: list[StepPublic] | None = None
    transitions: list[TransitionPublic] | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= to get the next page; null on the last")


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str
