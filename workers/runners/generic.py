"""Generic tests: a list of argv steps, each with an expected exit code and optional output regex.

A generic spec with ``pytest`` instead of ``steps`` runs a pytest suite (workers/runners/pytest_runner.py).
"""

from __future__ import annotations

import re
import time

from db.attempts import StepRecord
from db.enums import StepStatus
from db.states import Status
from db.types import utcnow
from workers.runners import pytest_runner
from workers.runners.base import Outcome, RunContext, summarize
from workers.sandbox import WorkspaceError, resolve_workspace, run_process, scrubbed_env


def run(ctx: RunContext) -> Outcome:
    spec = ctx.spec
    if "pytest" in spec:
        return pytest_runner.run(ctx)
    try:
        cwd = resolve_workspace(ctx.workspace_root, spec["workspace"])
    except WorkspaceError as exc:
        return Outcome(Status.ERROR, summarize([]), str(exc))

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
        )
        status, error = _judge(
            step, result.exit_code, result.output, result.timed_out, step_timeout, remaining
        )
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
    step: dict, exit_code: int | None, output: str, timed_out: bool, step_timeout: float, remaining: float
) -> tuple[str, str | None]:
    if timed_out:
        which = "test" if remaining <= step_timeout else "step"
        return StepStatus.TIMEOUT, f"{which} timeout after {step_timeout:g}s: process group killed"
    if exit_code is None:
        return StepStatus.ERROR, output.strip() or "process could not be started"
    expected = step.get("expect_exit", 0)
    if exit_code != expected:
        return StepStatus.FAILED, f"exit code {exit_code}, expected {expected}"
    pattern = step.get("expect_output")
    if pattern and not re.search(pattern, output, re.MULTILINE):
        return StepStatus.FAILED, f"output does not match /{pattern}/"
    return StepStatus.PASSED, None


def _why(outcome: tuple[Status, str | None]) -> str:
    return f"an earlier step ended {outcome[0].value}"


def _lost(statuses: list[str]) -> Outcome:
    return Outcome(Status.ERROR, summarize(statuses), "attempt lost its lease")
