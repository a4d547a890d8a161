"""Request and response bodies of executions (api/routes/executions/), apart from the ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StringConstraints, model_validator

from anvil.domain.enums import Priority, StepStatus, TriggerKind
from anvil.domain.gates import GATE_HELP, GateRules
from anvil.domain.rules import MAX_RULES, RuleError, parse_rules
from anvil.domain.selection import Request
from anvil.domain.specs.base import SHARDS_DESCRIPTION, Shards, field_error
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


RuleText = Annotated[str, StringConstraints(min_length=1, max_length=220)]
ChangedPath = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,1024}$")]
MAX_CHANGED_FILES = 10_000
# An execution shows at most this many selected keys (GET /executions/{id}/selection shows all).
SELECTION_TESTS_SHOWN = 1000
SELECTION_HELP = (
    "run only what these rules select (GET /api/v1/rules), with the reasons kept: "
    '{"rules": ["failed-in-last:3", "flaky"], "exclude": ["tag:slow"], "changed_files": ["src/a.py"]}; '
    'observation mode runs everything and records what the rules would have selected: {"observe": [rules]}'
)


class SelectionIn(Strict):
    """Which tests to run: the union of ``rules``, minus what ``exclude`` matches.

    ``{"observe": [rules]}`` (or ``"observe": true`` with ``rules``) runs everything and records
    what the rules would have selected (GET /api/v1/executions/{id}/selection reports afterwards).
    ``changed_files`` alone means ``"rules": ["changed-files"]``.
    """

    rules: list[RuleText] = Field(
        default_factory=list, max_length=MAX_RULES, description="combined as a union"
    )
    exclude: list[RuleText] = Field(
        default_factory=list, max_length=MAX_RULES, description="dropped afterwards"
    )
    changed_files: list[ChangedPath] = Field(
        default_factory=list,
        max_length=MAX_CHANGED_FILES,
        description="changed paths, relative to the repository root (for the changed-files rule)",
    )
    observe: StrictBool | list[RuleText] = Field(
        default=False, description="true, or the rules themselves: run everything, record what they select"
    )

    @model_validator(mode="after")
    def _rules_parse(self) -> SelectionIn:
        self.request()
        return self

    def request(self, branch: str | None = None) -> Request:
        """The parsed request; a bad rule is a 422 naming it."""
        rules, observe = self.rules, bool(self.observe)
        if isinstance(self.observe, list):
            if self.rules:
                raise field_error(
                    "SelectionIn",
                    "observe",
                    'give the rules in "observe", or in "rules" with "observe": true, not both',
                )
            rules = self.observe
        if not rules and self.changed_files:
            rules = ["changed-files"]
        if not rules:
            raise field_error(
                "SelectionIn", "rules", "give at least one rule, e.g. failed-in-last:3 (GET /api/v1/rules)"
            )
        parsed = {}
        for field, texts in (
            ("observe" if isinstance(self.observe, list) else "rules", rules),
            ("exclude", self.exclude),
        ):
            try:
                parsed[field != "exclude"] = parse_rules(texts)
            except RuleError as exc:
                raise field_error("SelectionIn", field, str(exc)) from None
        named = {r.name for group in parsed.values() for r in group}
        if "changed-files" in named and not self.changed_files:
            raise field_error("SelectionIn", "changed_files", "the changed-files rule needs changed_files")
        if self.changed_files and "changed-files" not in named:
            raise field_error(
                "SelectionIn", "changed_files", "changed_files are read only by the changed-files rule"
            )
        return Request(parsed[True], parsed[False], tuple(dict.fromkeys(self.changed_files)), observe, branch)


class CaseExecutionCreate(SourceFields):
    test_case_id: uuid.UUID
    priority: Priority = Priority.NORMAL
    run_id: RunId | None = None
    trigger_kind: TriggerKind = TriggerKind.API
    parent_execution_id: uuid.UUID | None = Field(default=None, description=PARENT_HELP)
    params: Params = Field(default_factory=dict)
    retry_policy: RetryPolicyIn | None = Field(default=None, description=RETRY_POLICY_HELP)
    expires_in_s: StrictFloat | None = Field(default=None, gt=0, le=MAX_EXPIRES_S, description=EXPIRES_HELP)
    selection: SelectionIn | None = Field(default=None, description=SELECTION_HELP)
    shards: Shards | None = Field(default=None, description=SHARDS_DESCRIPTION + "; overrides the case's")
    gate: GateRules | None = Field(
        default=None, description=GATE_HELP + "; replaces the case's (pytest and bdd cases only)"
    )


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
    selection: SelectionIn | None = Field(
        default=None,
        description=SELECTION_HELP
        + "; only the member cases with something selected run, each with its tests",
    )
    gate: GateRules | None = Field(default=None, description=GATE_HELP + "; replaces the suite's")


class SelectionDryRun(SourceFields):
    """What a submission with ``selection`` would run: exactly one of test_case_id, test_suite_id."""

    test_case_id: uuid.UUID | None = None
    test_suite_id: uuid.UUID | None = None
    selection: SelectionIn

    @model_validator(mode="after")
    def _one_target(self) -> SelectionDryRun:
        if (self.test_case_id is None) == (self.test_suite_id is None):
            raise field_error(
                "SelectionDryRun", "test_case_id", "give exactly one of test_case_id and test_suite_id"
            )
        return self


class TestChoicePublic(BaseModel):
    __test__ = False
    key: str
    selected: bool
    rule: str | None = Field(description="the rule that selected it, or the exclude rule that dropped it")
    reason: str


class CaseSelectionPublic(BaseModel):
    test_case_id: uuid.UUID
    name: str
    selected: bool = Field(description="the case runs (whole or some of its tests)")
    whole: bool = Field(description="it runs as defined, new tests included; else only its selected tests")
    rule: str | None
    reason: str | None
    counts: dict[str, int]
    tests: list[TestChoicePublic]


class SelectionPublic(BaseModel):
    rules: list[str]
    exclude: list[str]
    observe: bool
    changed_files_total: int
    counts: dict[str, int] = Field(
        description="tests selected of the known tests, cases selected of the cases"
    )
    notes: list[str] = Field(
        description="e.g. a changed path no mapping covers (then everything is selected)"
    )
    cases: list[CaseSelectionPublic]


class SelectionReport(BaseModel):
    execution_id: uuid.UUID
    status: str
    finished: bool
    observe: bool
    selection: dict[str, Any] = Field(description="the selection as the execution recorded it")
    report: dict[str, Any] = Field(
        description=(
            "over the test results so far: tests, selected, failures, caught (failures the selection "
            "ran), missed, missed_tests, time_total_s, time_selected_s, time_saved_s, time_saved_fraction"
        )
    )


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
    failed_only: StrictBool = Field(
        default=False,
        description=(
            "run only the tests that failed or errored in it (of a sharded run: in any shard), as the "
            "retry's selection; a sharded case splits them into shards again"
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
    execution_id: uuid.UUID = Field(description="the execution that ran it (of a sharded run: its shard)")
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
        default=None,
        description=(
            "a suite: its members done of total, counts by status; a case split into shards: its shards"
        ),
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
        default=None,
        description=(
            "the selection it ran: its rules, counts and the tests selected (the first "
            f"{SELECTION_TESTS_SHOWN}; GET /api/v1/executions/{{id}}/selection shows them all)"
        ),
    )
    shard_plan: dict[str, Any] | None = Field(
        default=None,
        description=(
            "a case split into shards: how many were asked for and made, the tests collected, each "
            "shard's execution, tests and planned seconds (its children have trigger_kind shard)"
        ),
    )
    gate: dict[str, Any] | None = Field(
        default=None,
        description=(
            "a finished suite or sharded case run with a quality gate: status (passed or failed), "
            "rules, measured (tests, passed, failed, errors, skipped, quarantined, pass_rate, "
            "duration_s, new_failures) and failed_rules (rule, measured, limit, message); null without a gate"
        ),
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
                "progress": _progress(execution, snapshot),
                "retry_policy": execution.retry_policy or {},
                "selection": shown_selection(execution.selection),
                **extra,
            }
        )


def _progress(execution: Execution, snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """How far a suite's members or a sharded case's shards are."""
    if snapshot.get("kind") == SUITE:
        return execution.summary
    if execution.shard_plan is not None:
        return (execution.summary or {}).get("shards")
    return None


def shown_selection(selection: dict[str, Any] | None) -> dict[str, Any] | None:
    tests = (selection or {}).get("tests")
    if selection is None or tests is None or len(tests) <= SELECTION_TESTS_SHOWN:
        return selection
    return {**selection, "tests": tests[:SELECTION_TESTS_SHOWN], "tests_truncated": True}


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
