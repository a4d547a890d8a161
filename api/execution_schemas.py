"""Request and response bodies of executions (api/routes/executions/), apart from the ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StringConstraints

from anvil.domain.enums import Priority, StepStatus, TriggerKind
from api.schemas import RETRY_POLICY_HELP, Params, RetryPolicyIn, Strict
from db.executions import Source
from db.models import Execution
from db.suite_runs import SUITE

# The columns ExecutionPublic.from_row copies as they are (when the schema has a field of that name).
EXECUTION_COLUMNS = frozenset(Execution.__table__.columns.keys())

RunId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PARENT_HELP = "the execution this one follows up; required for trigger_kind repair and agent"
MAX_EXPIRES_S = 30 * 24 * 3600
EXPIRES_HELP = "not started within this many seconds: SKIPPED with reason expired"


Revision = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-Za-z._/-]{1,64}$"),
    Field(description="what was tested: a commit SHA (the CLI fills it from git); kept with every result"),
]
Branch = Annotated[
    str,
    StringConstraints(pattern=r"^[^\s\x00-\x1f\x7f~^:?*\[\\]{1,255}$"),
    Field(description="the branch tested, e.g. main (the CLI fills it from git)"),
]
Environment = Annotated[
    str,
    StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,100}$"),
    Field(description="a free label for where it ran, e.g. staging or py3.12"),
]


class SourceFields(Strict):
    """What was tested; members of a suite, retries and every test result inherit it."""

    revision: Revision | None = None
    branch: Branch | None = None
    environment: Environment | None = None

    def source(self) -> Source:
        return Source(self.revision, self.branch, self.environment)


class CaseExecutionCreate(SourceFields):
    test_case_id: uuid.UUID
    priority: Priority = Priority.NORMAL
    run_id: RunId | None = None
    trigger_kind: TriggerKind = TriggerKind.API
    parent_execution_id: uuid.UUID | None = Field(default=None, description=PARENT_HELP)
    params: Params = Field(default_factory=dict)
    retry_policy: RetryPolicyIn | None = Field(default=None, description=RETRY_POLICY_HELP)
    expires_in_s: StrictFloat | None = Field(default=None, gt=0, le=MAX_EXPIRES_S, description=EXPIRES_HELP)


# Items per batch submission: one transaction and a publish per item.
MAX_BATCH = 500


class BatchExecutionCreate(Strict):
    items: list[CaseExecutionCreate] = Field(
        min_length=1, max_length=MAX_BATCH, description="each as POST /api/v1/executions/case takes it"
    )


class SuiteExecutionCreate(SourceFields):
    test_suite_id: uuid.UUID
    priority: Priority | None = Field(default=None, description="default: the suite's default_priority")
    run_id: RunId | None = None
    trigger_kind: TriggerKind = TriggerKind.API
    parent_execution_id: uuid.UUID | None = Field(default=None, description=PARENT_HELP)
    params: Params = Field(default_factory=dict)
    retry_policy: RetryPolicyIn | None = Field(default=None, description=RETRY_POLICY_HELP)
    expires_in_s: StrictFloat | None = Field(default=None, gt=0, le=MAX_EXPIRES_S, description=EXPIRES_HELP)


class CancelRequest(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None


class RetryRequest(Strict):
    repair: StrictBool = Field(
        default=False,
        description=(
            "a repair (the test or the code was fixed): trigger_kind repair, and it runs the case's "
            "current version; without it the retry runs the same snapshot as the execution it follows"
        ),
    )


Text = Annotated[str, StringConstraints(max_length=20_000)]


class StepResultCreate(Strict):
    status: StepStatus
    actual: Text | None = None
    comment: Text | None = None


class SuiteProgress(BaseModel):
    total: int
    done: int
    by_status: dict[str, int]


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
    test_suite_id: uuid.UUID | None = None
    root_execution_id: uuid.UUID | None = None
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
    progress: SuiteProgress | None = Field(
        default=None, description="suite executions only: members done of total, counts by status"
    )
    error: str | None
    assigned_to: uuid.UUID | None = None
    retry_policy: dict[str, Any] = Field(
        default_factory=dict, description="the policy in force, resolved when it was submitted"
    )
    retry_index: int = Field(default=0, description="retries after failures before this one (0: a first try)")
    flaky: bool = Field(default=False, description="passed on a retry after an earlier attempt failed")
    expires_at: datetime | None = None
    cancel_requested_at: datetime | None = Field(
        default=None, description="a cancel reached it while RUNNING: its worker stops the test"
    )
    schedule_id: uuid.UUID | None = None
    slot_at: datetime | None = Field(default=None, description="the schedule slot that fired it")
    revision: str | None = None
    branch: str | None = None
    environment: str | None = None
    selection: dict[str, Any] | None = Field(
        default=None, description="the selection it ran: its rules, counts and the tests selected"
    )
    steps: list[StepPublic] | None = None
    transitions: list[TransitionPublic] | None = None

    @classmethod
    def from_row(cls, execution: Execution, **extra: Any) -> Self:
        """The public view of an executions row; ``extra`` sets what the row does not hold
        (steps, transitions, a descendant's level)."""
        snapshot = execution.case_snapshot or {}
        started, finished = execution.started_at, execution.finished_at
        duration = round((finished - started).total_seconds(), 6) if started and finished else None
        row = {name: getattr(execution, name) for name in cls.model_fields if name in EXECUTION_COLUMNS}
        return cls.model_validate(
            {
                **row,
                # Name and kind as they were when it was submitted: the case may have changed since.
                "test_case_name": snapshot.get("name"),
                "kind": snapshot.get("kind"),
                "duration_s": duration,
                "progress": execution.summary if snapshot.get("kind") == SUITE else None,
                "retry_policy": execution.retry_policy or {},
                **extra,
            }
        )


class BatchPublic(BaseModel):
    items: list[ExecutionPublic]


class DescendantPublic(ExecutionPublic):
    level: int = Field(description="1 = a child of the execution, 2 = a grandchild, ...")


class LineagePublic(BaseModel):
    execution: ExecutionPublic
    depth: int = Field(description="the depth applied (the request's, capped by the server)")
    ancestors: list[ExecutionPublic] = Field(description="from the root down to the parent")
    descendants: list[DescendantPublic] = Field(description="breadth-first: level, then creation order")
    siblings: list[ExecutionPublic] = Field(description="the other executions with the same parent")


class CorrelationPublic(BaseModel):
    correlation_id: uuid.UUID
    total_executions: int
    root_execution_id: uuid.UUID
    executions: list[ExecutionPublic] = Field(description="ordered by creation")


class StepResultPublic(Strict):
    step: StepPublic
    execution: ExecutionPublic
