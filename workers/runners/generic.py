"""Generic tests: a list of argv steps, each with an expected exit code and optional output regex."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import regex

from anvil.domain.enums import StepStatus
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord, summarize
from anvil.domain.workspaces import WorkspaceError, resolve_workspace
from db.types import utcnow
from workers.confinement import prepare_scratch
from workers.runners.base import RunContext
from workers.sandbox import ProcessResult, run_process, scrubbed_env

# The longest an expect_output pattern may search a step's output (catastrophic backtracking:
# "(a+)+$" against "aaaa…!" would otherwise hold the worker slot past every timeout).
EXPECT_BUDGET_S = 5.0


def run(ctx: RunContext) -> Outcome:
    spec = ctx.spec
    try:
        cwd = resolve_workspace(ctx.workspace_root, spec["workspace"])
    except WorkspaceError as exc:
        return Outcome(Status.ERROR, summarize([]), str(exc))
    # One scratch directory (HOME, TMPDIR) for all the steps of the test: a build step can leave
    # files there for the next one.
    with tempfile.TemporaryDirectory(prefix="anvil-test-") as scratch:
        prepare_scratch(Path(scratch), ctx.sandbox)
        return _run_steps(ctx, cwd, Path(scratch))


def _run_steps(ctx: RunContext, cwd: Path, scratch: Path) -> Outcome:
    spec = ctx.spec
    steps = spec["steps"]
    test_deadline = time.monotonic() + ctx.timeout_s
    statuses: list[str] = []
    outcome: tuple[Status, str | None] = (Status.PASSED, None)
    for seq, step in enumerate(steps, start=1):
        name = step.get("name") or " ".join(step["run"])
        if outcome[0] is not Status.PASSED:
            # First failure ends the test; the rest are recorded as skipped.
            record = StepRecord(
                seq=seq, name=name, status=StepStatus.SKIPPED, error="not run: " + _why(outcome)
            )
            if not ctx.emit(record):
                return _lost(statuses)
            statuses.append(record.status)
            continue
        remaining = test_deadline - time.monotonic()
        step_timeout = min(float(step.get("timeout_s", ctx.timeout_s)), remaining)
        env = scrubbed_env({**ctx.base_env(), **step.get("env", {})}, ctx.passthrough_env)
        started = utcnow()
        result = run_process(
            list(step["run"]),
            cwd=cwd,
            env=env,
            timeout_s=max(step_timeout, 0.0),
            output_cap=ctx.output_cap,
            stop=ctx.stop,
            confinement=ctx.confinement(scratch),
        )
        budget = min(EXPECT_BUDGET_S, max(test_deadline - time.monotonic(), 0.05))
        status, error = _judge(step, result, step_timeout, remaining, budget)
        if result.stopped:
            status, error = (
                StepStatus.CANCELLED,
                "stopped: " + (ctx.stop_reason[0] if ctx.stop_reason else "stop requested"),
            )
        record = StepRecord(
            seq=seq,
            name=name,
            status=status,
            started_at=started,
            finished_at=utcnow(),
            duration_s=round(result.duration_s, 6),
            output=result.output,
            output_truncated=result.truncated,
            error=error,
            details={"argv": list(step["run"]), "exit_code": result.exit_code},
        )
        if not ctx.emit(record):
            return _lost(statuses)
        statuses.append(status)
        if status == StepStatus.FAILED:
            outcome = (Status.FAILED, f"step {seq} ({name}) failed: {error}")
        elif status == StepStatus.TIMEOUT:
            outcome = (Status.TIMEOUT, error)
        elif status == StepStatus.ERROR:
            outcome = (Status.ERROR, f"step {seq} ({name}): {error}")
        elif status == StepStatus.CANCELLED:
            outcome = (Status.CANCELLED, error)
    return Outcome(outcome[0], summarize(statuses), outcome[1])


def _judge(
    step: dict, result: ProcessResult, step_timeout: float, remaining: float, budget_s: float
) -> tuple[str, str | None]:
    if result.timed_out:
        which = "test" if remaining <= step_timeout else "step"
        return StepStatus.TIMEOUT, f"{which} timeout after {step_timeout:g}s: process group killed"
    if result.exit_code is None:
        return StepStatus.ERROR, result.output.strip() or "process could not be started"
    if result.limit:
        return StepStatus.ERROR, f"{result.limit} (exit code {result.exit_code})"
    expected = step.get("expect_exit", 0)
    if result.exit_code != expected:
        return StepStatus.FAILED, f"exit code {result.exit_code}, expected {expected}"
    pattern = step.get("expect_output")
    if pattern:
        try:
            found = regex.search(pattern, result.output, regex.MULTILINE, timeout=budget_s)
        except TimeoutError:
            return StepStatus.FAILED, f"expect_output took too long (over {budget_s:g}s) on the output"
        if not found:
            return StepStatus.FAILED, f"output does not match /{pattern}/"
    return StepStatus.PASSED, None


def _why(outcome: tuple[Status, str | None]) -> str:
    return f"an earlier step ended {outcome[0].value}"


def _lost(statuses: list[str]) -> Outcome:
    return Outcome(Status.ERROR, summarize(statuses), "attempt lost its lease")
