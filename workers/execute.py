"""Run one execution: claim it, heartbeat its lease, run its runner, record one final status.

The claim is the first thing done: a duplicate or stale delivery loses it and returns, which is
what makes late acknowledgement safe. Every later write carries the attempt (fencing token).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError

from anvil.settings import Settings, get_settings
from db.cancel import cancel_requested
from db.executions import StepRecord, claim, finish, renew_lease, write_step
from db.models import Execution
from db.session import new_session
from db.states import Status
from workers.runners import runner_for
from workers.runners.base import Outcome, RunContext, summarize
from workers.sandbox import sweep_orphans

log = logging.getLogger("anvil.worker")
T = TypeVar("T")


def execute(execution_id: uuid.UUID, *, worker: str) -> str:
    settings = get_settings()
    worker = f"{worker}/{os.getpid()}"
    sweep_orphans()  # tests left running by a sibling process that died (cheap: one small directory)

    def _claim() -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        with new_session() as session, session.begin():
            attempt = claim(session, execution_id, worker=worker, lease_s=settings.lease_ttl_s)
            if attempt is None:
                return None
            # Two columns, not the whole ORM row: this is on every execution's path.
            snapshot, params = session.execute(
                select(Execution.case_snapshot, Execution.params).where(Execution.id == execution_id)
            ).one()
            return attempt, snapshot, params

    # Ride out a short database outage here rather than dropping the message: otherwise the
    # execution would wait for the reconciler's next re-publish once the database is back.
    claimed = _retrying(_claim, settings.lease_ttl_s)
    if claimed is None:
        return "not claimed"
    attempt, snapshot, params = claimed

    stop = threading.Event()
    reasons: list[str] = []
    heartbeat = _Heartbeat(execution_id, attempt, settings, stop, reasons)
    heartbeat.start()
    ctx = RunContext(
        execution_id=execution_id,
        attempt=attempt,
        snapshot=snapshot,
        params=params,
        workspace_root=settings.workspace_root,
        output_cap=settings.step_output_cap,
        stop=stop,
        emit=lambda step: _emit(execution_id, attempt, step, settings),
        stop_reason=reasons,
    )
    try:
        outcome = runner_for(snapshot["kind"])(ctx)
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

    def _finish() -> bool:
        with new_session() as session, session.begin():
            return finish(
                session,
                execution_id,
                attempt=attempt,
                status=outcome.status,
                actor=f"worker:{worker}",
                summary=outcome.summary,
                error=outcome.error,
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


def _emit(execution_id: uuid.UUID, attempt: int, step: StepRecord, settings: Settings) -> bool:
    def write() -> bool:
        with new_session() as session, session.begin():
            return write_step(session, execution_id, attempt=attempt, step=step, lease_s=settings.lease_ttl_s)

    try:
        return _retrying(write, settings.lease_ttl_s)
    except OperationalError:
        return False  # the database stayed unreachable for a whole lease: stop, another attempt follows


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


class _Heartbeat(threading.Thread):
    """Renews the lease; when it cannot, sets ``stop`` so the runner kills the test (self-fencing)."""

    def __init__(
        self,
        execution_id: uuid.UUID,
        attempt: int,
        settings: Settings,
        stop: threading.Event,
        reasons: list[str],
    ) -> None:
        super().__init__(name=f"heartbeat-{execution_id}", daemon=True)
        self.execution_id, self.attempt, self.settings = execution_id, attempt, settings
        self.stop_run, self.reasons = stop, reasons
        self.cancelled = False
        self.fenced = False  # stopped because the lease could not be held (not a cancel request)
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=self.settings.heartbeat_s + 5)

    def run(self) -> None:
        """Poll for a cancel request often; renew the lease every heartbeat."""
        last_ok = next_renewal = time.monotonic()
        poll = min(self.settings.cancel_poll_s, self.settings.heartbeat_s)
        while not self._halt.wait(poll):
            try:
                with new_session() as session, session.begin():
                    if cancel_requested(session, self.execution_id, attempt=self.attempt):
                        self._fence("cancelled", cancelled=True)
                        return
                    if time.monotonic() < next_renewal + self.settings.heartbeat_s:
                        continue
                    owned = renew_lease(
                        session, self.execution_id, attempt=self.attempt, lease_s=self.settings.lease_ttl_s
                    )
            except (OperationalError, DBAPIError) as exc:
                log.warning("lease renewal of %s failed: %s", self.execution_id, exc)
                # Past our own lease another worker may take over: stop before that can overlap.
                if time.monotonic() - last_ok > self.settings.lease_ttl_s - self.settings.heartbeat_s:
                    self._fence("lease could not be renewed (database unreachable)")
                    return
                continue
            if not owned:
                self._fence("the attempt no longer owns the execution")
                return
            last_ok = next_renewal = time.monotonic()

    def _fence(self, reason: str, *, cancelled: bool = False) -> None:
        if not cancelled:
            log.warning("self-fencing %s attempt %s: %s", self.execution_id, self.attempt, reason)
        self.reasons.append(reason)
        self.cancelled = cancelled
        self.fenced = not cancelled
        self.stop_run.set()
