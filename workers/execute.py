"""Run one execution: claim it, heartbeat its lease, run its runner, record one final status.

The claim is the first thing done: a duplicate or stale delivery loses it and returns, which is
what makes late acknowledgement safe. Every later write carries the attempt (fencing token).

Finished steps are written by the heartbeat thread at its next poll (every ``cancel_poll_s``), a
batch per transaction together with the lease renewal, and whatever is left with the final
status: a short test costs two transactions (claim, finish), a pytest run of a thousand tests a
few per second instead of one per test.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from anvil.domain.quarantine import QuarantineWatch
from anvil.domain.shards import Shard
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord, summarize
from anvil.settings import Settings, get_settings
from db.attempts import Claimed, Lease, claim, finish, renew_lease
from db.cancel import cancel_requested
from db.quarantine import quarantined_keys_of_execution
from db.secrets import SecretUnavailable
from db.session import new_session
from db.shard_runs import PlanRefused, create_shards
from db.shard_tests import narrow_selection
from db.types import utcnow
from workers.confinement import (
    SandboxUnavailable,
    case_limits,
    default_limits,
    max_limits,
    worker_sandbox,
)
from workers.handout import Handout, prepare
from workers.publish import publish_many
from workers.redact import redact, redact_step
from workers.runners import runner_for
from workers.runners.base import RunContext
from workers.sandbox import sweep_orphans
from workers.secret_env import reveal_for
from workers.sharding import make_plan, requested_shards, takes_as_it_goes

log = logging.getLogger("anvil.worker")
T = TypeVar("T")


def execute(execution_id: uuid.UUID, *, worker: str) -> str:
    settings = get_settings()
    worker = f"{worker}/{os.getpid()}"
    sweep_orphans()  # tests left running by a sibling process that died (cheap: one small directory)

    def _claim() -> tuple[Claimed, frozenset[str]] | None:
        with new_session() as session, session.begin():
            claimed = claim(session, execution_id, worker=worker, lease_s=settings.lease_ttl_s)
            if claimed is None:
                return None
            # Read here, by the worker: the test process never reaches the database.
            return claimed, quarantined_keys_of_execution(session, execution_id, now=utcnow())

    # Ride out a short database outage here rather than dropping the message: otherwise the
    # execution would wait for the reconciler's next re-publish once the database is back.
    claimed_now = _retrying(_claim, settings.lease_ttl_s)
    if claimed_now is None:
        return "not claimed"
    (attempt, snapshot, params, selection), quarantined = claimed_now
    # Steps of quarantined tests are marked; a failure of only those tests does not fail the run.
    watch = QuarantineWatch(snapshot, quarantined)

    stop = threading.Event()
    reasons: list[str] = []
    pending = PendingSteps()
    heartbeat = _Heartbeat(execution_id, attempt, settings, stop, reasons, pending)
    heartbeat.start()

    hidden: list[str] = []  # the values of the test's secrets: redacted from all it records
    ctx_handout: Handout | None = None

    def emit(step: StepRecord) -> bool:
        """Keep the step for the heartbeat's next write; False once the attempt was fenced."""
        pending.add(watch.see(redact_step(step, hidden)))
        return not heartbeat.fenced

    try:
        snapshot, revealed = _retrying(lambda: reveal_for(snapshot, settings), settings.lease_ttl_s)
        hidden.extend(revealed)
        ctx = RunContext(
            execution_id=execution_id,
            attempt=attempt,
            snapshot=snapshot,
            params=params,
            selection=selection,
            workspace_root=settings.workspace_root,
            output_cap=settings.step_output_cap,
            stop=stop,
            emit=emit,
            stop_reason=reasons,
            sandbox=worker_sandbox(settings),
            limits=case_limits(
                snapshot["spec"].get("limits"),
                defaults=default_limits(settings),
                ceiling=max_limits(settings),
            ),
        )
        outcome, ended = _split_first(ctx, heartbeat, settings, worker)
        if ended is not None:
            return ended
        if outcome is None and takes_as_it_goes(selection):
            ctx.handout = _retrying(
                lambda: prepare(
                    execution_id,
                    attempt,
                    selection or {},
                    budget_s=settings.lease_ttl_s,
                    carries=snapshot["kind"] == "pytest",
                ),
                settings.lease_ttl_s,
            )
            if ctx.handout is None:
                return "lost"
            ctx_handout = ctx.handout
        if outcome is None:
            outcome = runner_for(snapshot["kind"])(ctx)
    except SandboxUnavailable as exc:
        outcome = Outcome(Status.ERROR, summarize([]), f"this worker cannot sandbox tests: {exc}")
    except SecretUnavailable as exc:
        outcome = Outcome(Status.ERROR, summarize([]), f"cannot run the test: {exc}")
    except Exception as exc:  # a runner bug must end as ERROR with the reason, never vanish
        log.exception("runner crashed on %s", execution_id)
        outcome = Outcome(Status.ERROR, summarize([]), f"runner crashed: {type(exc).__name__}: {exc}")
    finally:
        heartbeat.halt()
    if heartbeat.fenced:
        # This attempt gave up its lease (self-fencing), so it is lost whatever the runner made of being
        # stopped: recording that (CANCELLED, which nobody asked for) would be wrong. The lease sweep
        # re-queues it as the next attempt, or aborts it at the attempt cap.
        log.warning("attempt %s of %s was fenced; lease expiry will recover it", attempt, execution_id)
        return "fenced"
    if heartbeat.cancelled and outcome.status is not Status.PAUSED:
        # Whatever the runner made of being stopped, a cancel request ends as CANCELLED.
        outcome = Outcome(Status.CANCELLED, outcome.summary, "cancelled")

    if hidden and outcome.error:
        outcome = Outcome(outcome.status, outcome.summary, redact(outcome.error, hidden, cut_ends=True))
    outcome = watch.decide(outcome)  # after the redaction: its note quotes the error
    last_steps = pending.take()  # the heartbeat has stopped: what it did not write goes with the result

    def _finish() -> bool:
        # Committing the result also schedules its retry (FAILED/ERROR/TIMEOUT with retries left)
        # and settles its suite, in the same transaction: the session's before_commit hook
        # (db/session.py -> db/reactions.py).
        with new_session() as session, session.begin():
            if ctx_handout is not None:
                # What this shard ran is its part now: a retry of it runs exactly these.
                ran = [step["name"] for step in ctx_handout.carried] + ctx_handout.taken
                narrow_selection(session, execution_id, attempt=attempt, tests=ran)
            return finish(
                session,
                execution_id,
                attempt=attempt,
                status=outcome.status,
                actor=f"worker:{worker}",
                summary=outcome.summary,
                error=outcome.error,
                steps=last_steps,
            )

    try:
        done = _retrying(_finish, settings.lease_ttl_s)
    except (OperationalError, DBAPIError):
        log.error(
            "could not record the result of %s attempt %s; lease expiry will recover it",
            execution_id,
            attempt,
        )
        return "unrecorded"
    return outcome.status.value if done else "lost"


def _split_first(
    ctx: RunContext, heartbeat: _Heartbeat, settings: Settings, worker: str
) -> tuple[Outcome | None, str | None]:
    """A case with shards: collect, plan and hand the run over to its shards. Returns the outcome
    to record instead of running the case (stopped meanwhile), or what the task ends with (the
    shards were created, or the attempt lost the execution); (None, None): run the case itself."""
    requested = requested_shards(ctx.snapshot, ctx.selection)
    if requested == 1:
        return None, None
    planned = make_plan(ctx, requested, settings)
    if ctx.stop.is_set():  # cancelled (or fenced) while collecting
        return Outcome(Status.CANCELLED, summarize([]), "stopped while planning its shards"), None
    if planned is None:
        return None, None
    # Halted first: a renewal after the commit would give the parent a lease again, and the lease
    # sweep would then take the parent for lost.
    heartbeat.halt()
    shards, durations, listed_by = planned
    split = functools.partial(
        _split, ctx.execution_id, ctx.attempt, shards, durations, requested, worker, listed_by
    )
    try:
        publish_many(_retrying(split, settings.lease_ttl_s))
    except PlanRefused as exc:
        if not exc.cancelled:
            return None, "lost"
        return Outcome(Status.CANCELLED, summarize([]), "cancelled before its shards were created"), None
    return None, "sharded"


def _split(
    execution_id: uuid.UUID,
    attempt: int,
    shards: list[Shard],
    durations: dict[str, float],
    requested: int | str,
    worker: str,
    listed_by: uuid.UUID | None,
) -> list[tuple[uuid.UUID, str]]:
    """Commit the shards of a planned execution (fenced by ``attempt``); returns what to publish."""
    with new_session() as session, session.begin():
        return create_shards(
            session,
            execution_id,
            attempt=attempt,
            shards=shards,
            durations=durations,
            requested=requested,
            actor=f"worker:{worker}",
            listed_by=listed_by,
        )


class PendingSteps:
    """Steps the runner finished that are not in the database yet (shared with the heartbeat)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: list[StepRecord] = []

    def add(self, step: StepRecord) -> None:
        with self._lock:
            self._steps.append(step)

    def take(self) -> list[StepRecord]:
        with self._lock:
            steps, self._steps = self._steps, []
        return steps

    def put_back(self, steps: list[StepRecord]) -> None:
        """Steps whose write failed go back in front, to be written in order next time."""
        with self._lock:
            self._steps[:0] = steps


def _retrying(fn: Callable[[], T], budget_s: float) -> T:
    """Retry ``fn`` on database connection errors for up to ``budget_s`` seconds."""
    deadline = time.monotonic() + budget_s
    delay = 0.1
    while True:
        try:
            return fn()
        except OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


_keepers: dict[int, ThreadPoolExecutor] = {}


def _keeper() -> ThreadPoolExecutor:
    """This process's heartbeat threads, kept between executions: starting a thread per test
    made every test wait for the scheduler to run it, which on a busy host took milliseconds.
    One per process id, as a forked pool process must not use its parent's threads."""
    pid = os.getpid()
    keeper = _keepers.get(pid)
    if keeper is None:
        keeper = _keepers[pid] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="heartbeat")
    return keeper


class _Heartbeat:
    """Writes finished steps, polls for a cancel request and renews the lease; when the lease
    cannot be held, sets ``stop`` so the runner kills the test (self-fencing)."""

    def __init__(
        self,
        execution_id: uuid.UUID,
        attempt: int,
        settings: Settings,
        stop: threading.Event,
        reasons: list[str],
        pending: PendingSteps,
    ) -> None:
        self.execution_id, self.attempt, self.settings = execution_id, attempt, settings
        self.stop_run, self.reasons, self.pending = stop, reasons, pending
        self.cancelled = False
        self.fenced = False  # stopped because the lease could not be held (not a cancel request)
        self._halt = threading.Event()
        self._running: Future[None] | None = None

    def start(self) -> None:
        self._running = _keeper().submit(self.run)
        self._running.add_done_callback(self._report_crash)

    def _report_crash(self, done: Future[None]) -> None:
        error = done.exception()
        if error is not None:  # the lease then expires and the sweep recovers the execution
            log.error("heartbeat of %s crashed", self.execution_id, exc_info=error)

    def halt(self) -> None:
        self._halt.set()
        if self._running is not None:
            wait([self._running], timeout=self.settings.heartbeat_s + 5)

    def run(self) -> None:
        """Every poll: write finished steps (renewing the lease) or just look for a cancel
        request; renew the lease at least every heartbeat."""
        last_ok = time.monotonic()
        poll = min(self.settings.cancel_poll_s, self.settings.heartbeat_s)
        while not self._halt.wait(poll):
            steps = self.pending.take()
            renew = bool(steps) or time.monotonic() >= last_ok + self.settings.heartbeat_s
            try:
                lease = self._poll(steps, renew=renew)
            except (OperationalError, DBAPIError) as exc:
                self.pending.put_back(steps)
                log.warning("lease renewal of %s failed: %s", self.execution_id, exc)
                # Past our own lease another worker may take over: stop before that can overlap.
                if time.monotonic() - last_ok > self.settings.lease_ttl_s - self.settings.heartbeat_s:
                    self._fence("lease could not be renewed (database unreachable)")
                    return
                continue
            if lease is Lease.LOST:
                self._fence("the attempt no longer owns the execution")
                return
            if lease is Lease.CANCEL_REQUESTED:
                self._fence("cancelled", cancelled=True)
                return
            if lease is not None:
                last_ok = time.monotonic()

    def _poll(self, steps: list[StepRecord], *, renew: bool) -> Lease | None:
        """Renew (writing ``steps``) when asked to, else only read the cancel flag (None: no renewal)."""
        with new_session() as session, session.begin():
            if renew:
                return renew_lease(
                    session,
                    self.execution_id,
                    attempt=self.attempt,
                    lease_s=self.settings.lease_ttl_s,
                    steps=steps,
                )
            if cancel_requested(session, self.execution_id, attempt=self.attempt):
                return Lease.CANCEL_REQUESTED
            return None

    def _fence(self, reason: str, *, cancelled: bool = False) -> None:
        if not cancelled:
            log.warning("self-fencing %s attempt %s: %s", self.execution_id, self.attempt, reason)
        self.reasons.append(reason)
        self.cancelled = cancelled
        self.fenced = not cancelled
        self.stop_run.set()
