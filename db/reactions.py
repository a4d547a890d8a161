"""What follows a status change, inside the same transaction, just before it commits.

db/session.py registers ``react`` as the ``before_commit`` hook of Anvil's sessions. From the
changes transition() noted (db/changes.py) it
1. records the per-test results of executions that reached a result (db/test_results.py),
2. schedules retries for attempts that ended FAILED/ERROR/TIMEOUT with retries left,
3. judges case runs that ended with a quality gate (db/gates.py), and
4. settles the suites whose members changed (db/suite_runs.settle, which judges their gates),
5. writes the webhook outbox: runs that finished, tests found flaky (db/webhook_events.py),
so a result, its test results, its retry, its suite's new state and its notifications are
committed together or not at all.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import changes
from db.gates import judge_case_runs
from db.retries import schedule_retry
from db.suite_runs import settle
from db.test_results import record_results
from db.webhook_events import flaky_detected, runs_finished


def react(session: Session) -> None:
    # A retry or a settled suite is itself a change (a new child, a suite's final status): repeat
    # until nothing is left.
    while changes.pending(session):
        due = changes.take_results_due(session)
        record_results(session, due)
        for execution_id in changes.take_retry_candidates(session):
            schedule_retry(session, execution_id, actor="retry-policy")
        judge_case_runs(session, due)  # after the retries: a RETRYING case run is not over
        roots = changes.take_dirty_suites(session)
        for root_id in sorted(roots):  # a fixed lock order between transactions
            settle(session, root_id, members_finished=roots[root_id])
        flaky_detected(session, due)
        # Last: a run's final status, retry, gate and (for a suite, settled above) counts are known.
        runs_finished(session, changes.take_ended(session))
