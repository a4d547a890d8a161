"""A BDD shard that takes its scenarios from the plan as it goes (work stealing).

behave's run is fixed when it starts, so the shard runs behave once per batch: it takes a batch
of scenarios from the plan (its own first, then unstarted ones of the shard with the most planned
time left: workers/handout.py, db/shard_tests.take), runs exactly those, and takes the next batch
when behave ends, until none is left. A batch is about a third of the shard's planned time (at
least ``MIN_TRIP_S``): few enough behave starts, small enough that a shard done early still
finds scenarios to take. One recorder numbers the steps of every batch as one run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from anvil.domain.states import Status
from anvil.domain.steps import Outcome
from workers.confinement import prepare_scratch
from workers.handout import Handout
from workers.runners.base import RunContext
from workers.runners.tooling import run_tool
from workers.sandbox import ProcessResult


class Recorder(Protocol):
    """What this needs of workers/runners/bdd.StepRecorder (which imports this module)."""

    completed: bool

    def follow(self, report: Path) -> None: ...
    def read(self) -> None: ...
    def summary(self) -> dict[str, Any]: ...
    def outcome(self, result: ProcessResult) -> Outcome: ...
    def judge(self, code: int, output: str) -> Outcome: ...


MIN_TRIP_S = 3.0  # planned seconds of scenarios per behave run, at least
MOST = 500  # scenarios per behave run, at most


def run_batches(
    ctx: RunContext,
    handout: Handout,
    recorder: Recorder,
    argv_for: Callable[[list[str], Path], list[str]],
    *,
    cwd: Path,
    private: Path,
) -> Outcome:
    """Run behave over batch after batch of the plan; ``argv_for(keys, report)``: behave's
    command line for those scenarios, reporting into ``report``."""
    planned = float(((ctx.selection or {}).get("shard") or {}).get("planned_s") or 0.0)
    trip_s = max(MIN_TRIP_S, planned / 3)
    deadline = time.monotonic() + ctx.timeout_s  # the test's timeout covers every batch
    code, output, batches = 0, "", 0
    while not ctx.stop.is_set():
        keys = handout.batch(trip_s, MOST)
        if not keys:
            break
        batches += 1
        report = private / f"steps-{batches}.jsonl"
        report.touch()
        prepare_scratch(private, ctx.sandbox)  # the sandbox user writes the new report
        recorder.follow(report)
        left = {**ctx.snapshot, "timeout_s": max(deadline - time.monotonic(), 0.001)}
        result = run_tool(
            dataclasses.replace(ctx, snapshot=left),
            argv_for(keys, report),
            cwd=cwd,
            private=private,
            on_tick=recorder.read,
        )
        if (
            result.stopped
            or result.timed_out
            or result.exit_code is None
            or result.limit
            or not recorder.completed
        ):
            return recorder.outcome(result)  # what stopped this batch ends the shard
        code, output = code or result.exit_code, result.output
    if ctx.stop.is_set():
        why = ctx.stop_reason[0] if ctx.stop_reason else "stop requested"
        return Outcome(Status.CANCELLED, recorder.summary(), f"stopped: {why}")
    if handout.failed:
        return Outcome(Status.ERROR, recorder.summary(), handout.failed)
    if batches == 0:
        return Outcome(
            Status.SKIPPED, recorder.summary(), "every scenario of the plan was taken by other shards"
        )
    return recorder.judge(code, output)
