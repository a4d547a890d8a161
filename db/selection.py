"""What selection rules read from the history, and the selection of a case or a suite's members.

Only what the rules ask for is read, one grouped query each over the cases in scope:
``failed-in-last:N`` the latest N results of each test (one index probe per test on PostgreSQL,
a window function on SQLite), ``failure-rate-above`` and ``flaky`` the counts of the window
(flaky: db/flaky.py's detection, anvil/domain/flaky.py), ``slowest`` the median durations,
``new`` which tests have a result on the branch. The choice itself: anvil/domain/selection.py.
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import Table, exists, func, select, text, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from anvil.domain.flaky import Thresholds, in_words
from anvil.domain.observation import Observed
from anvil.domain.results import FAILING, SKIPPED
from anvil.domain.selection import CaseFacts, Request, Selection, TestFacts, choose, with_suite_map
from anvil.domain.windows import days
from anvil.errors import InvalidInput
from db.flaky import Tally, failing_tests, judged, same_revision_tests, tallies
from db.models import FAILING_RESULTS, Execution, Test, TestCase, TestResult, TestSuite
from db.scopes import Scope, result_filters
from db.sql import chunks, plain_rows
from db.suites import resolve_members

TESTS = cast(Table, Test.__table__)
RESULTS = cast(Table, TestResult.__table__)
T = TypeVar("T")


def select_cases(
    session: Session,
    *,
    cases: Sequence[TestCase],
    request: Request,
    settings: Any,
    now: datetime,
    suite: TestSuite | None = None,
) -> Selection:
    """The selection over ``cases`` (a suite's members, with the suite's file map merged in)."""
    facts = case_facts(session, cases, request, settings=settings, now=now)
    if suite is not None:
        facts = with_suite_map(facts, suite.file_map or {})
    return choose(request, facts)


def case_facts(
    session: Session, cases: Sequence[TestCase], request: Request, *, settings: Any, now: datetime
) -> list[CaseFacts]:
    every = (*request.rules, *request.exclude)
    names = {r.name for r in every}
    ids = [case.id for case in cases]
    tests: dict[uuid.UUID, list[tuple[str, str | None, int]]] = defaultdict(list)
    for chunk in chunks(ids):
        t = TESTS.c  # plain columns through the driver: thousands of rows
        statement = select(t.id, t.test_case_id, t.key, t.file).where(t.test_case_id.in_(chunk))
        for test_id, case_id, key, file in plain_rows(session, statement):
            tests[case_id].append((key, file, test_id.int))
    since = now - timedelta(days=settings.flaky_window_days)
    window = [TestResult.test_case_id.in_(ids), TestResult.recorded_at >= since]
    # What the rules read, keyed by the tests' ids as integers: a UUID hashes in Python code, an
    # int in C, and each of thousands of tests is looked up in each of these.
    recent: dict[int, tuple[str, ...]] = {}
    if "failed-in-last" in names:
        n = max(int(r.value or 1) for r in every if r.name == "failed-in-last")
        recent = _by_int(latest_statuses(session, ids, n))
    counts = _by_int(tallies(session, window)) if "failure-rate-above" in names else {}
    flaky = _by_int(flaky_reasons(session, ids, settings=settings, now=now)) if "flaky" in names else {}
    medians = _by_int(median_durations(session, window)) if "slowest" in names else {}
    on_branch = None
    if "new" in names:
        all_ids = [uuid.UUID(int=n) for found in tests.values() for _, _, n in found]
        on_branch = {test_id.int for test_id in seen_on_branch(session, all_ids, request.branch)}
    groups = _groups(session, [str(r.value) for r in every if r.name == "group"])
    return [
        CaseFacts(
            id=case.id,
            name=case.name,
            kind=case.kind,
            tags=frozenset(case.tags or ()),
            groups=frozenset(name for name, members in groups.items() if case.id in members),
            file_map=case.file_map or {},
            tests=tuple(
                _test_facts(key, file, n, recent, counts, flaky, medians, on_branch)
                # In key order, sorted here: the same on every database, and no collation sort.
                for key, file, n in sorted(tests.get(case.id, ()))
            ),
        )
        for case in cases
    ]


def _test_facts(
    key: str,
    file: str | None,
    n: int,
    recent: dict[int, tuple[str, ...]],
    counts: dict[int, Tally],
    flaky: dict[int, str],
    medians: dict[int, float],
    on_branch: set[int] | None,
) -> TestFacts:
    count = counts.get(n)
    return TestFacts(
        key=key,
        file=file,
        recent=recent.get(n, ()),
        runs=count.passed + count.failures if count else 0,
        failures=count.failures if count else 0,
        flaky=flaky.get(n),
        p50_s=medians.get(n),
        on_branch=True if on_branch is None else n in on_branch,
    )


def _by_int(found: dict[uuid.UUID, T]) -> dict[int, T]:
    return {test_id.int: value for test_id, value in found.items()}


def latest_statuses(
    session: Session, case_ids: Sequence[uuid.UUID], n: int
) -> dict[uuid.UUID, tuple[str, ...]]:
    """The latest ``n`` statuses (skipped results left out: the test did not run), newest first,
    of each test that failed in any of them (the others cannot match failed-in-last)."""
    r, t = RESULTS.c, TESTS.c
    failing = sorted(FAILING)
    # Only a test that ever failed can match: those come from the partial index of failing results
    # alone (an index-only scan; the few passes on a retry it also holds are weeded out below).
    ever_failed = select(r.test_id).where(r.test_case_id.in_(case_ids), text(FAILING_RESULTS)).distinct()
    if session.get_bind().dialect.name == "postgresql":
        # One short index scan (ix_test_results_test, in its order) per test that ever failed, n rows
        # each; only the tests with a failure among them come back.
        last = (
            select(r.status, r.recorded_at)
            .where(r.test_id == t.id, r.status != SKIPPED)
            .order_by(r.recorded_at.desc())
            .limit(n)
            .lateral()
        )
        statement = (
            select(t.id, func.array_agg(aggregate_order_by(last.c.status, last.c.recorded_at.desc())))
            .select_from(TESTS.join(last, true()))
            .where(t.test_case_id.in_(case_ids), t.id.in_(ever_failed))
            .group_by(t.id)
            .having(func.bool_or(last.c.status.in_(failing)))
        )
        return {test_id: tuple(statuses) for test_id, statuses in session.execute(statement)}
    ranked = (
        select(
            r.test_id,
            r.status,
            func.row_number()
            .over(partition_by=r.test_id, order_by=(r.recorded_at.desc(), r.id.desc()))
            .label("rank"),
        )
        .where(r.test_case_id.in_(case_ids), r.status != SKIPPED)
        .subquery()
    )
    rows: dict[uuid.UUID, list[tuple[int, str]]] = defaultdict(list)
    for test_id, status, rank in session.execute(select(ranked).where(ranked.c.rank <= n)):
        rows[test_id].append((rank, status))
    return {
        test_id: tuple(status for _, status in sorted(found))
        for test_id, found in rows.items()
        if any(status in FAILING for _, status in found)
    }


def median_durations(session: Session, window: list[Any]) -> dict[uuid.UUID, float]:
    r = TestResult
    timed = [*window, r.duration_s.is_not(None), r.status != "skipped"]
    if session.get_bind().dialect.name == "postgresql":
        median = func.percentile_cont(0.5).within_group(r.duration_s)
        return {
            t: float(m)
            for t, m in session.execute(select(r.test_id, median).where(*timed).group_by(r.test_id))
        }
    durations: dict[uuid.UUID, list[float]] = defaultdict(list)
    for test_id, duration in session.execute(select(r.test_id, r.duration_s).where(*timed)):
        durations[test_id].append(duration)
    return {test_id: statistics.median(values) for test_id, values in durations.items()}


def seen_on_branch(session: Session, test_ids: Sequence[uuid.UUID], branch: str | None) -> set[uuid.UUID]:
    """Tests with a result on ``branch`` (no branch: with any result at all)."""
    r = TestResult
    found: set[uuid.UUID] = set()
    for chunk in chunks(list(test_ids)):
        where = [r.test_id == Test.id] + ([r.branch == branch] if branch is not None else [])
        found.update(session.scalars(select(Test.id).where(Test.id.in_(chunk), exists().where(*where))))
    return found


def observed(session: Session, execution: Execution) -> list[Observed]:
    """The results of a finished execution (a suite's: of its members, the last attempt of each
    test), each marked with whether its recorded selection chose it."""
    if execution.test_case_id is not None:
        stored = {execution.id: execution.selection or {}}
    else:
        stored = {
            member_id: selection or {}
            for member_id, selection in session.execute(
                select(Execution.id, Execution.selection).where(
                    Execution.root_execution_id == execution.id, Execution.id != execution.id
                )
            )
        }
    # Per member: everything chosen (run whole), or the keys chosen.
    members = {i: (bool(sel.get("whole")), frozenset(sel.get("tests") or ())) for i, sel in stored.items()}
    latest: dict[tuple[uuid.UUID, str], Observed] = {}
    r = TestResult
    for chunk in chunks(list(members)):
        rows = session.execute(
            select(r.execution_id, r.test_case_id, Test.key, r.status, r.duration_s)
            .join(Test, Test.id == r.test_id)
            .where(r.execution_id.in_(chunk))
            .order_by(r.recorded_at, r.id)
        )
        for execution_id, case_id, key, status, duration in rows:
            whole, keys = members[execution_id]
            latest[(case_id, key)] = Observed(key, status, duration, whole or key in keys)
    return list(latest.values())


def _groups(session: Session, names: list[str]) -> dict[str, set[uuid.UUID]]:
    """group:<suite> rules: each named suite's member cases; an unknown suite is refused."""
    found: dict[str, set[uuid.UUID]] = {}
    for name in dict.fromkeys(names):
        suite = session.scalars(
            select(TestSuite).where(TestSuite.name == name, TestSuite.deleted_at.is_(None))
        ).first()
        if suite is None:
            raise InvalidInput(
                f"rule group:{name}: there is no test suite named {name!r}", field="body.selection"
            )
        found[name] = {case.id for case in resolve_members(session, suite)}
    return found


def flaky_reasons(
    session: Session, case_ids: Sequence[uuid.UUID], *, settings: Any, now: datetime
) -> dict[uuid.UUID, str]:
    """The flaky tests of the cases, each with its strongest evidence in words. Those that passed
    and failed on one revision are found by one grouped read; only the others are judged."""
    filters, _ = result_filters(session, Scope(tuple(case_ids)), days(settings.flaky_window_days), now)
    failing = failing_tests(session, filters)
    sure = same_revision_tests(session, filters, failing)
    reasons = {test_id: f"passed and failed on revision {revision}" for test_id, revision in sure.items()}
    rest = [test_id for test_id in failing if test_id not in sure]
    for test_id, verdict in judged(session, filters, rest, Thresholds.of(settings)).items():
        reasons[test_id] = in_words(verdict.evidence[0])
    return reasons
