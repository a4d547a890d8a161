"""Fault: a rolling restart. Each of two workers gets SIGTERM in turn every 20 s while 300
executions run, and a replacement is started as soon as it has exited.

SIGTERM is Celery's warm shutdown: the worker stops taking messages, lets the tests it runs finish
and record their result, gives back the messages it had reserved but not started (acks_late), and
exits. So a rolling restart should interrupt nothing: every execution PASSED, none left QUEUED or
RUNNING, none run twice. An execution at attempt > 1 is one a shutdown did interrupt (its lease
expired and the tick re-queued it); it is counted and must stay within the attempt cap.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time

import pytest

from anvil.cli.processes import Child, wait_log
from tests.e2e.conftest import START_TIMEOUT_S
from tests.faults.conftest import FaultStack, FaultStackFactory
from tests.faults.ledger import assert_clean, report

# 110-300 s here; more on a slow, loaded machine (CI runs three fault files at once).
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

EXECUTIONS = 300
SUBMIT_OVER_S = 90.0  # a steady stream, so every restart finds work running whatever the throughput
RESTART_EVERY_S = 20.0
TEST_SECONDS = 0.3
WARM_SHUTDOWN_LIMIT_S = 30.0  # the tests are 0.3 s long: anything near this is a hang


class RollingRestart:
    """Every ``RESTART_EVERY_S``: SIGTERM the older of the two workers, wait for it, start another."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self.slots = list(stack.workers)
        self.done = threading.Event()
        self.shutdowns_s: list[float] = []  # SIGTERM to exit, per restart
        self.ready_s: list[float] = []  # replacement spawned to Celery's "ready."
        self.hung: list[str] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        began, turn = time.monotonic(), 0
        try:
            # On a fixed cadence: the time a restart takes does not push the next one back.
            while not self.done.wait(max(0.0, began + (turn + 1) * RESTART_EVERY_S - time.monotonic())):
                self._restart(turn % len(self.slots))
                turn += 1
        except Exception as exc:  # surfaced by the test, not lost in a thread
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _restart(self, slot: int) -> None:
        old: Child = self.slots[slot]
        started = time.monotonic()
        old.proc.terminate()
        try:
            old.proc.wait(WARM_SHUTDOWN_LIMIT_S)
        except subprocess.TimeoutExpired:
            self.hung.append(old.name)
            old.kill()
        self.shutdowns_s.append(time.monotonic() - started)
        spawned = time.monotonic()
        new = self.stack.spawn_worker(concurrency=2)
        self.slots[slot] = new
        wait_log(new, "ready.", timeout=START_TIMEOUT_S)
        self.ready_s.append(time.monotonic() - spawned)


def test_rolling_restart_of_two_workers_every_20_s(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    case = stack.detector_case(TEST_SECONDS)
    restarts = RollingRestart(stack)
    started = time.monotonic()
    restarts.thread.start()
    try:
        for i in range(EXECUTIONS):
            stack.ledger.submit(stack.client, case["id"])
            time.sleep(max(0.0, started + (i + 1) * SUBMIT_OVER_S / EXECUTIONS - time.monotonic()))
        # Keep restarting until the work is done (bounded), then let the recovery finish in peace.
        # 60-90 s here; up to four times that with the flood running beside it on a slow day.
        stack.ledger.wait_finished(stack.engine, timeout=400)
    finally:
        restarts.done.set()
        restarts.thread.join(WARM_SHUTDOWN_LIMIT_S + START_TIMEOUT_S + 5)
    elapsed = time.monotonic() - started
    figures = stack.check(timeout=120)
    interrupted = stack.sql("SELECT count(*) FROM executions WHERE attempt > 1")[0][0]
    shutdowns = restarts.shutdowns_s
    figures.update(
        restarts=len(shutdowns),
        restart_every_s=RESTART_EVERY_S,
        interrupted=interrupted,
        worker_lost_requeues=stack.sql(
            "SELECT count(*) FROM execution_transitions WHERE reason = 'worker_lost'"
        )[0][0],
        warm_shutdown_s={
            "max": round(max(shutdowns, default=0.0), 1),
            "mean": round(statistics.fmean(shutdowns), 1) if shutdowns else None,
        },
        replacement_ready_max_s=round(max(restarts.ready_s, default=0.0), 1),
        elapsed_s=round(elapsed, 1),
    )
    report("fault_rolling_restart_every_20s", figures)

    assert not restarts.errors, restarts.errors
    assert not restarts.hung, f"workers that did not finish a warm shutdown in time: {restarts.hung}"
    assert len(shutdowns) >= 4, f"only {len(shutdowns)} restarts happened during the run"
    assert figures["accepted"] == EXECUTIONS, figures["http_codes"]
    assert figures["statuses"] == {"PASSED": EXECUTIONS}, figures["statuses"]
    if not interrupted:  # every test ran once: nothing was started and then dropped
        assert figures["detector_runs"] == EXECUTIONS, figures
    assert_clean(figures)
