"""The first attempt of a case with ``shards``: collect its tests, plan the split, hand it over.

Collection runs the case's own tool in the sandbox (pytest ``--collect-only`` with the case's
arguments and selection; for BDD the scenarios of its features), so the plan holds exactly what
the run would run. The durations come from the test history (the p50 of each test's results in
the flaky window), the slot count for ``auto`` from the worker registry. When collection fails or
one shard is all there is, the attempt simply runs the case whole, as an unsharded case runs:
the failure then shows as that run's own steps.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from anvil.domain.enums import Priority
from anvil.domain.shards import SHARDABLE, Shard, expected_durations, plan, shard_count
from anvil.settings import Settings
from db.models import Execution
from db.session import new_session
from db.shard_runs import SHARD, previous_tests, recent_durations
from db.sql import read_db_now
from db.types import utcnow
from db.workers import live_slots
from workers.runners.base import RunContext

log = logging.getLogger("anvil.worker")


def requested_shards(snapshot: dict[str, Any], selection: dict[str, Any] | None) -> int | str:
    """How many shards the execution asks for: 1 unless it is a shardable case's own execution
    (a shard, or a retry of one, carries its part in its selection and runs it)."""
    if snapshot.get("kind") not in SHARDABLE or (selection or {}).get(SHARD):
        return 1
    requested = (snapshot.get("spec") or {}).get("shards") or 1
    return requested if requested == "auto" else int(requested)


def takes_as_it_goes(selection: dict[str, Any] | None) -> bool:
    """A shard of a plan that takes its tests from the plan as it runs (workers/handout.py)."""
    return bool(((selection or {}).get(SHARD) or {}).get("steal"))


def collect(ctx: RunContext) -> tuple[list[str], str | None]:
    """The keys of the tests the case would run, or none and why."""
    if ctx.snapshot["kind"] == "pytest":
        from workers.runners.pytest_runner import collect as collect_pytest

        return collect_pytest(ctx)
    from workers.runners.bdd import collect as collect_bdd

    return collect_bdd(ctx)


def make_plan(
    ctx: RunContext, requested: int | str, settings: Settings
) -> tuple[list[Shard], dict[str, float], uuid.UUID | None] | None:
    """The shards to split into, each test's expected duration (in collection order) and the
    earlier run whose test list the plan starts from (None: collected now); or None: run the case
    whole.

    A pytest case run whole whose last sharded run had the same spec starts from that run's test
    list: its shards collect the tests anyway (each pytest must), and the first to do so confirms
    the list, so the run spares a serial collection. Otherwise the tests are collected first."""
    since = utcnow() - timedelta(days=settings.flaky_window_days)
    listed = None
    if ctx.snapshot["kind"] == "pytest" and ctx.selected is None:
        with new_session() as session:
            listed = previous_tests(session, session.get_one(Execution, ctx.execution_id), since=since)
    if listed is not None:
        listed_by, tests = listed
    else:
        listed_by, (tests, why) = None, collect(ctx)
        if not tests:
            log.warning("not sharding %s: %s", ctx.execution_id, why or "no tests collected")
            return None
    with new_session() as session:
        priority, case_id = session.execute(
            select(Execution.priority, Execution.test_case_id).where(Execution.id == ctx.execution_id)
        ).one()
        slots = (
            live_slots(session, Priority(priority).queue, now=read_db_now(session))
            if requested == "auto"
            else 0
        )
        known = recent_durations(session, _case(case_id), since=since)
    count = shard_count(requested, tests=len(tests), slots=slots, min_tests=settings.shard_min_tests)
    if count == 1:
        log.info("%s runs as one shard (%d tests, %d live slots)", ctx.execution_id, len(tests), slots)
        return None
    return plan(tests, known, count), expected_durations(tests, known), listed_by


def _case(case_id: uuid.UUID | None) -> uuid.UUID:
    assert case_id is not None  # a shardable kind is always a case's execution
    return case_id
