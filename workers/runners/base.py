"""What every runner receives and returns."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from anvil.domain.selection import runs_whole
from anvil.domain.steps import Outcome, StepRecord
from workers.confinement import Confinement, Limits, Sandbox

if TYPE_CHECKING:
    from workers.handout import Handout


@dataclass
class RunContext:
    execution_id: uuid.UUID
    attempt: int
    snapshot: dict[str, Any]  # the case as it was at submission: name, kind, spec, timeout_s
    params: dict[str, Any]
    workspace_root: Path
    output_cap: int
    # Set when the run must stop now: the attempt lost its lease, or the execution was cancelled.
    stop: threading.Event
    # Records one finished step; False means this attempt no longer owns the execution.
    emit: Callable[[StepRecord], bool]
    passthrough_env: tuple[str, ...] = ()
    stop_reason: list[str] = field(default_factory=list)
    # The worker's sandbox (None: ANVIL_SANDBOX=off) and this test's limits; without limits (a
    # runner called directly, as unit tests do) the test runs unconfined.
    sandbox: Sandbox | None = None
    limits: Limits | None = None
    # The submission's selection (anvil/domain/selection.py), None: run the case as defined.
    selection: dict[str, Any] | None = None
    # A shard that takes its tests as it goes (work stealing): workers/handout.py.
    handout: Handout | None = None

    @property
    def spec(self) -> dict[str, Any]:
        return self.snapshot["spec"]

    @property
    def timeout_s(self) -> float:
        return float(self.snapshot["timeout_s"])

    def confinement(self, scratch: Path) -> Confinement | None:
        """How this test's processes are confined, with ``scratch`` as their writable directory."""
        if self.limits is None:
            return None
        return Confinement(self.sandbox, self.limits, bool(self.spec.get("network", True)), scratch)

    @property
    def selected(self) -> list[str] | None:
        """The keys of the tests to run, or None: run the case as defined (no selection, an
        observation, or a selection that takes the case whole)."""
        if runs_whole(self.selection):
            return None
        return list((self.selection or {}).get("tests") or [])

    def base_env(self) -> dict[str, str]:
        return {
            "ANVIL_EXECUTION_ID": str(self.execution_id),
            "ANVIL_ATTEMPT": str(self.attempt),
        }


class Runner(Protocol):
    """What a runner is: given the attempt's RunContext, it runs the test and returns its Outcome.

    It reports each step as soon as the step finishes, through ``ctx.emit(StepRecord(...))``;
    ``emit`` returning False, or ``ctx.stop`` being set, means the attempt lost the execution (or it
    was cancelled): the runner stops its processes and returns at once. It never writes to the
    database itself. Steps are numbered from 1 in the order they ran.
    """

    def __call__(self, ctx: RunContext, /) -> Outcome: ...
