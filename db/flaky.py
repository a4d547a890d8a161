"""Flaky tests in a scope and window, with their evidence (the policy: anvil/domain/flaky.py).

Only a test that failed (or passed on a retry) in the window can be flaky, and failures are few:
one filtered pass over the window finds those tests, then their results are read through the
(test_id, recorded_at) index and judged. Where failures are everywhere (more than DIRECT failing
tests), they are first counted per branch and only those whose counts allow flakiness (a passing
retry, a flip rate the counts allow, a pass and a failure on one revision) are read.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import ColumnElement, Table, func, select, text
from sqlalchemy.orm import Session

from anvil.domain.flaky import STRENGTH, Result, Thresholds, Verdict, could_flip, judge
from anvil.domain.results import FAILED, FAILING, PASSED, SKIPPED
from anvil.domain.windows import Window
from db.models import FAILING_RESULTS, Test, TestResult
from db.scopes import Scope, result_filters
from db.sql import chunks, plain_rows

# Up to this many failing tests, their results are read and judged at once; above, they are first
# counted per branch and only the candidates by those counts are read (_narrowed).
DIRECT = 1000
RESULTS = cast(Table, TestResult.__table__)


@dataclass
class Tally:
    """One test's results in a window, counted."""

    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0
    retry_passes: int = 0
    duration_sum: float = 0.0
    duration_n: int = 0
    duration_max: float | None = None
    # branch -> (passed, failed or error), for the flip-rate bound
    branches: dict[str | None, tuple[int, int]] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return self.failed + self.error

    @property
    def runs(self) -> int:
        return self.passed + self.failed + self.error + self.skipped


class ListedTest(NamedTuple):
    """What a flaky listing shows of a test (read as plain columns: hundreds per listing)."""

    id: uuid.UUID
    test_case_id: uuid.UUID
    key: str
    name: str
    quarantined_at: datetime | None
    quarantine_expires_at: datetime | None


@dataclass(frozen=True)
class FlakyTest:
    test: ListedTest
    verdict: Verdict
    runs: int  # its results in the window
    failures: int


def tallies(
    session: Session, filters: Sequence[ColumnElement[bool]], *, by_branch: bool = False
) -> dict[uuid.UUID, Tally]:
    """Counts per test of the results matching ``filters`` (one grouped pass over them); with
    ``by_branch`` also per branch (for the flip-rate bound: keep it to a few tests)."""
    c = RESULTS.c
    is_ = c.status.__eq__
    keys = (c.test_id, c.branch) if by_branch else (c.test_id,)
    # Plain columns on the connection: a row per test, no ORM row handling.
    rows = session.connection().execute(
        select(
            *keys,
            func.count().filter(is_(PASSED)),
            func.count().filter(is_(FAILED)),
            func.count().filter(is_("error")),
            func.count().filter(is_(SKIPPED)),
            func.count().filter(c.flaky_retry.is_(True), is_(PASSED)),
            func.sum(c.duration_s),
            func.count(c.duration_s),
            func.max(c.duration_s),
        )
        .where(*filters)
        .group_by(*keys)
    )
    found: dict[uuid.UUID, Tally] = {}
    for row in rows:
        test_id, branch = row[0], row[1] if by_branch else None
        passed, failed, error, skipped, retries, d_sum, d_n, d_max = row[len(keys) :]
        t = found.setdefault(test_id, Tally())
        t.passed += passed
        t.failed += failed
        t.error += error
        t.skipped += skipped
        t.retry_passes += retries
        t.duration_sum += d_sum or 0.0
        t.duration_n += d_n
        if d_max is not None:
            t.duration_max = d_max if t.duration_max is None else max(t.duration_max, d_max)
        if by_branch:
            t.branches[branch] = (passed, failed + error)
    return found


def failing_tests(session: Session, filters: Sequence[ColumnElement[bool]]) -> list[uuid.UUID]:
    """The tests that failed or passed on a retry in the results matching ``filters``: the only
    ones that can be flaky (one filtered pass; few rows survive the filter)."""
    # The predicate as SQL text, the same as the partial index's: PostgreSQL uses the index only
    # when it can prove the query's condition implies the index's, which bound parameters defeat.
    return list(session.scalars(select(TestResult.test_id).where(*filters, text(FAILING_RESULTS)).distinct()))


def branch_tallies(
    session: Session, filters: Sequence[ColumnElement[bool]], test_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Tally]:
    """Counts per test and branch of ``test_ids`` only (read through the test index)."""
    counts: dict[uuid.UUID, Tally] = {}
    for chunk in chunks(list(test_ids)):
        counts.update(tallies(session, [*filters, TestResult.test_id.in_(chunk)], by_branch=True))
    return counts


def candidates(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    counts: dict[uuid.UUID, Tally],
    thresholds: Thresholds,
) -> list[uuid.UUID]:
    """Tests that may be flaky: a passing retry, a branch whose counts allow the flip rate, or (read
    from the database for the tests that both passed and failed) a pass and a failure on one revision."""
    found = {
        test_id
        for test_id, t in counts.items()
        if t.retry_passes or any(could_flip(p, f, thresholds) for p, f in t.branches.values())
    }
    mixed = [test_id for test_id, t in counts.items() if t.passed and t.failures and test_id not in found]
    found.update(same_revision_tests(session, filters, mixed))
    return sorted(found)


def same_revision_tests(
    session: Session, filters: Sequence[ColumnElement[bool]], test_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Those of ``test_ids`` that passed and failed on one revision in the results matching
    ``filters``, each with the latest such revision: flaky by the strongest evidence
    (anvil/domain/flaky.same_revision), found by one grouped read instead of judging their results
    one by one."""
    r = TestResult
    latest: dict[uuid.UUID, tuple[datetime, str]] = {}
    for chunk in chunks(list(test_ids)):
        for test_id, revision, at in session.execute(
            select(r.test_id, r.revision, func.max(r.recorded_at))
            .where(*filters, r.test_id.in_(chunk), r.revision.is_not(None), r.status != SKIPPED)
            .group_by(r.test_id, r.revision)
            .having(func.count().filter(r.status == PASSED) > 0)
            .having(func.count().filter(r.status != PASSED) > 0)
        ):
            if test_id not in latest or at > latest[test_id][0]:
                latest[test_id] = (at, revision)
    return {test_id: revision for test_id, (_, revision) in latest.items()}


def flaky_count(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    failing: Sequence[uuid.UUID],
    thresholds: Thresholds,
) -> int:
    """How many of ``failing`` (see failing_tests) are flaky. Those with the strongest evidence are
    counted by one grouped read; only the others are judged on their results."""
    sure = same_revision_tests(session, filters, failing)
    return len(sure) + len(judged(session, filters, [t for t in failing if t not in sure], thresholds))


def verdicts(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    test_ids: Iterable[uuid.UUID],
    thresholds: Thresholds,
) -> dict[uuid.UUID, tuple[Verdict, list[Result]]]:
    """The flaky tests among ``test_ids``, each judged on its results matching ``filters``."""
    c = RESULTS.c
    found: dict[uuid.UUID, tuple[Verdict, list[Result]]] = {}
    for chunk in chunks(list(test_ids)):
        rows: dict[uuid.UUID, list[Result]] = defaultdict(list)
        statement = select(
            c.test_id, c.status, c.revision, c.branch, c.recorded_at, c.execution_id, c.flaky_retry
        ).where(*filters, c.test_id.in_(chunk))
        for test_id, *values in plain_rows(session, statement):
            rows[test_id].append(Result(*values))
        for test_id, results in rows.items():
            verdict = judge(results, thresholds)
            if verdict.flaky:
                found[test_id] = verdict, results
    return found


def flaky_tests(
    session: Session, *, scope: Scope, window: Window, thresholds: Thresholds, now: datetime
) -> list[FlakyTest]:
    """The flaky tests in ``scope`` and ``window``: strongest evidence first, then most failures."""
    filters, _ = result_filters(session, scope, window, now)
    return flaky_list(session, filters, failing_tests(session, filters), thresholds)


def flaky_ids(
    session: Session, *, scope: Scope, window: Window, thresholds: Thresholds, now: datetime
) -> set[uuid.UUID]:
    """Just the ids of the flaky tests (the ``flaky`` filter of the tests listing)."""
    return set(flaky_verdicts(session, scope=scope, window=window, thresholds=thresholds, now=now))


def flaky_verdicts(
    session: Session, *, scope: Scope, window: Window, thresholds: Thresholds, now: datetime
) -> dict[uuid.UUID, Verdict]:
    """The flaky tests' verdicts by test id, without loading the tests (statistics, selection)."""
    filters, _ = result_filters(session, scope, window, now)
    return judged(session, filters, failing_tests(session, filters), thresholds)


def judged(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    failing: Sequence[uuid.UUID],
    thresholds: Thresholds,
) -> dict[uuid.UUID, Verdict]:
    """The verdicts of the flaky tests among ``failing`` (see failing_tests)."""
    found = verdicts(session, filters, _narrowed(session, filters, failing, thresholds), thresholds)
    return {test_id: verdict for test_id, (verdict, _) in found.items()}


def flaky_list(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    failing: Sequence[uuid.UUID],
    thresholds: Thresholds,
    *,
    direct: int | None = None,
) -> list[FlakyTest]:
    """The flaky tests among ``failing`` (see failing_tests), strongest evidence first, then most
    failures. ``direct``: see _narrowed."""
    judged = verdicts(session, filters, _narrowed(session, filters, failing, thresholds, direct), thresholds)
    t = Test.__table__.c
    columns = (t.id, t.test_case_id, t.key, t.name, t.quarantined_at, t.quarantine_expires_at)
    tests = {
        row[0]: ListedTest(*row)
        for chunk in chunks(list(judged))
        for row in plain_rows(session, select(*columns).where(t.id.in_(chunk)))
    }
    found = [
        FlakyTest(
            tests[i],
            verdict,
            runs=len(results),
            failures=sum(r.status in FAILING for r in results),
        )
        for i, (verdict, results) in judged.items()
        if i in tests
    ]
    found.sort(key=lambda f: board_order(f.verdict.strongest, f.failures, f.test.name))
    return found


def board_order(strongest: str | None, failures: int, name: str) -> tuple[int, int, str]:
    """The flaky board's order: strongest evidence first, then most failures, then by name."""
    return STRENGTH.index(strongest or STRENGTH[-1]), -failures, name


def _narrowed(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    failing: Sequence[uuid.UUID],
    thresholds: Thresholds,
    direct: int | None = None,
) -> Sequence[uuid.UUID]:
    """The failing tests whose results are worth judging. Up to ``direct`` (DIRECT) of them: all,
    their rows are read once. More (failures are everywhere): first counted per branch, and only
    the candidates by those counts are read."""
    if len(failing) <= (DIRECT if direct is None else direct):
        return failing
    return candidates(session, filters, branch_tallies(session, filters, failing), thresholds)
