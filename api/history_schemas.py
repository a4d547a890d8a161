"""Response bodies of tests, their history and statistics (api/routes/tests.py, api/routes/stats.py)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from anvil.domain.flaky import FLIP_RATE, PASSED_ON_RETRY, SAME_REVISION, Evidence, Thresholds
from anvil.domain.windows import Window
from db.models import Test
from db.test_results import quarantined


class ResultPublic(BaseModel):
    """One result of a test in one execution."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    test_id: uuid.UUID
    execution_id: uuid.UUID
    root_execution_id: uuid.UUID
    run_id: str | None
    trigger_kind: str
    status: str = Field(description="passed, failed, error or skipped")
    detail: str | None = Field(
        description="xfailed, xpassed, timeout, collection, ... when there is more to say"
    )
    duration_s: float | None
    attempt: int
    retry_index: int
    revision: str | None
    branch: str | None
    environment: str | None
    flaky_retry: bool = Field(description="passed on a retry after the execution it retries failed")
    quarantined: bool = Field(description="the test was quarantined when it ran")
    recorded_at: datetime


class TestPublic(BaseModel):
    __test__ = False

    id: uuid.UUID
    test_case_id: uuid.UUID
    case_name: str | None
    key: str = Field(description="what identifies it in its case: a pytest node id, feature::scenario, ...")
    kind: str
    name: str
    file: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    last_status: str | None
    last_execution_id: uuid.UUID | None
    quarantined: bool = Field(description="under quarantine now (not expired)")
    quarantined_at: datetime | None
    quarantined_by: str | None
    quarantine_reason: str | None
    quarantine_expires_at: datetime | None
    recent: list[ResultPublic] | None = Field(
        default=None, description="its last results, newest first, when asked for with ?recent=N"
    )

    @classmethod
    def from_row(
        cls, test: Test, *, now: datetime, case_name: str | None, recent: list[ResultPublic] | None = None
    ) -> TestPublic:
        return cls(
            id=test.id,
            test_case_id=test.test_case_id,
            case_name=case_name,
            key=test.key,
            kind=test.kind,
            name=test.name,
            file=test.file,
            first_seen_at=test.first_seen_at,
            last_seen_at=test.last_seen_at,
            last_status=test.last_status,
            last_execution_id=test.last_execution_id,
            quarantined=quarantined(test.quarantined_at, test.quarantine_expires_at, now),
            quarantined_at=test.quarantined_at,
            quarantined_by=test.quarantined_by,
            quarantine_reason=test.quarantine_reason,
            quarantine_expires_at=test.quarantine_expires_at,
            recent=recent,
        )


class SeenPublic(BaseModel):
    execution_id: uuid.UUID
    status: str
    recorded_at: datetime


EVIDENCE_HELP = (
    f"{SAME_REVISION}: passed and failed on one revision (strongest); {PASSED_ON_RETRY}: passed on a "
    f"retry after failing; {FLIP_RATE}: pass<->fail changes / (runs - 1) on one branch at or above "
    "the threshold"
)


class EvidencePublic(BaseModel):
    kind: str = Field(description=EVIDENCE_HELP)
    summary: str = Field(description="the evidence in one sentence")
    revision: str | None
    branch: str | None
    runs: int = Field(description="results considered: the revision's, the branch's, or the one retry")
    failures: int
    flips: int | None
    flip_rate: float | None
    executions: list[SeenPublic] = Field(description="the executions cited (at most 10), oldest first")

    @classmethod
    def of(cls, e: Evidence) -> EvidencePublic:
        return cls(
            kind=e.kind,
            summary=summary(e),
            revision=e.revision,
            branch=e.branch,
            runs=e.runs,
            failures=e.failures,
            flips=e.flips,
            flip_rate=e.flip_rate,
            executions=[
                SeenPublic(execution_id=s.execution_id, status=s.status, recorded_at=s.recorded_at)
                for s in e.executions
            ],
        )


def summary(e: Evidence) -> str:
    if e.kind == SAME_REVISION:
        return f"passed and failed on revision {e.revision}: {e.failures} of {e.runs} runs failed"
    if e.kind == PASSED_ON_RETRY:
        return f"passed on retry {e.executions[0].execution_id} after failing"
    where = f"branch {e.branch}" if e.branch is not None else "no branch"
    return f"flipped {e.flips} times in {e.runs} runs on {where} (flip rate {e.flip_rate:.2f})"


class WindowPublic(BaseModel):
    label: str = Field(description="30d, 12h, or 'last N runs'")
    since: datetime | None = Field(description="the earliest result considered (null: no result in scope)")
    runs: int | None

    @classmethod
    def of(cls, window: Window, since: datetime | None) -> WindowPublic:
        return cls(label=window.label, since=since, runs=window.runs)


class ScopePublic(BaseModel):
    case_ids: list[uuid.UUID] | None = Field(description="the cases read (null: every case)")
    tag: str | None
    branch: str | None


class ThresholdsPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    flip_rate: float
    min_flips: int
    min_runs: int

    @classmethod
    def of(cls, t: Thresholds) -> ThresholdsPublic:
        return cls(flip_rate=t.flip_rate, min_flips=t.min_flips, min_runs=t.min_runs)


class FlakyPublic(BaseModel):
    """Whether one test is flaky in the default window, and why."""

    flaky: bool
    window: WindowPublic
    evidence: list[EvidencePublic]


class TestDetail(TestPublic):
    __test__ = False

    flaky: FlakyPublic


class FlakyTestPublic(BaseModel):
    test_id: uuid.UUID
    test_case_id: uuid.UUID
    case_name: str | None
    key: str
    name: str
    quarantined: bool
    runs: int = Field(description="its results in the window")
    failures: int
    evidence: list[EvidencePublic] = Field(description="strongest first")


class FlakyList(BaseModel):
    window: WindowPublic
    scope: ScopePublic
    thresholds: ThresholdsPublic
    items: list[FlakyTestPublic]


class TestFigurePublic(BaseModel):
    __test__ = False
    model_config = ConfigDict(from_attributes=True)

    test_id: uuid.UUID
    test_case_id: uuid.UUID
    key: str
    name: str
    runs: int
    failures: int
    failure_rate: float | None
    mean_s: float | None = Field(description="mean duration in the window")
    max_s: float | None


class DayPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    day: date
    passed: int
    failed: int
    error: int
    skipped: int


class StatsPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    window: WindowPublic
    scope: ScopePublic
    runs: int = Field(description="distinct executions with results in scope and window")
    tests: int = Field(description="distinct tests run")
    results: int
    passed: int
    failed: int
    error: int
    skipped: int
    pass_rate: float | None = Field(description="passed / results that ran (skipped left out)")
    failure_rate: float | None = Field(description="(failed + error) / results that ran")
    flaky_tests: int
    flaky_rate: float | None = Field(description="flaky tests / tests run")
    duration_p50_s: float | None
    duration_p95_s: float | None
    slowest: list[TestFigurePublic] = Field(description="by mean duration")
    most_failing: list[TestFigurePublic] = Field(description="by failures (failed or error)")
    trend: list[DayPublic] = Field(description="results per day (UTC), oldest first")


class SlowestPublic(BaseModel):
    window: WindowPublic
    scope: ScopePublic
    items: list[TestFigurePublic]
