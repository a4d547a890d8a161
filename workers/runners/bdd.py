"""BDD tests (kind ``bdd``): behave runs a Gherkin feature; one step per Gherkin step, recorded live.

The worker runs ``python -m behave`` with its own interpreter, in the workspace, inside the sandbox,
with workers.behave_formatter as the only formatter writing to a file (``-f … -o FILE``). The
formatter appends one JSON line per finished Gherkin step to FILE, in a private temporary directory
outside the workspace; every sandbox tick reads the new lines and records them as steps. Results
come from behave's own model objects through the formatter, never from its terminal output.

``feature_text`` is written into that private directory as ``features/feature_text.feature``, next
to links to everything else in the workspace's ``features/`` directory (``steps/``,
``environment.py``, helper modules), so behave finds the workspace's step definitions and hooks
exactly as for a feature file of the workspace, and nothing is ever written into the workspace
(which may be shared by several workers, or mounted read-only).

Importing the formatter: the scrubbed environment has no PYTHONPATH, so PYTHONPATH names a private
directory holding only a link to Anvil's ``workers`` package (as for the pytest runner).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anvil.domain.enums import StepStatus
from anvil.domain.results import StepView, test_key
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord, summarize
from anvil.domain.workspaces import WorkspaceError, resolve_feature, resolve_workspace
from workers.confinement import prepare_scratch
from workers.runners.base import RunContext
from workers.runners.bdd_handout import run_batches
from workers.runners.jsonl import JsonLinesTail
from workers.runners.tooling import private_dir, run_tool
from workers.sandbox import ProcessResult

log = logging.getLogger("anvil.worker")

FORMATTER = "workers.behave_formatter:AnvilFormatter"
FEATURE_TEXT_FILE = "feature_text.feature"
# behave's step statuses, as recorded in step_traces (whose statuses are Anvil's vocabulary).
STEP_STATUS = {
    "passed": StepStatus.PASSED,
    "failed": StepStatus.FAILED,
    "skipped": StepStatus.SKIPPED,
    "undefined": StepStatus.UNDEFINED,
    "pending": StepStatus.PENDING,
    "pending_warn": StepStatus.PENDING,
    "error": StepStatus.ERROR,
    "hook_error": StepStatus.ERROR,
    "cleanup_error": StepStatus.ERROR,
    "untested": StepStatus.NOT_RUN,
    "untested_pending": StepStatus.PENDING,
    "untested_undefined": StepStatus.UNDEFINED,
    "xfailed": StepStatus.XFAILED,
    "xpassed": StepStatus.XPASSED,
}
# Scenario statuses meaning the test itself failed (an undefined step or an exception in a step
# makes behave's scenario "error"), and those meaning the harness did (hooks, cleanups, abort).
SCENARIO_FAILED = {"failed", "error", "undefined", "pending"}
SCENARIO_BROKEN = {"hook_error", "cleanup_error", "untested", "unknown", "executing"}
MESSAGE_LINES = 15
# A step's data table is kept in its details up to this many rows (heading included).
TABLE_ROWS_KEPT = 101


def scenario_name_pattern(name: str) -> str:
    """behave's ``--name`` is a regular expression searched in scenario names: select ``name`` only.

    Scenarios generated from a Scenario Outline are named ``<outline> -- @<row id> <examples>``.
    """
    escaped = re.escape(name)
    return f"^{escaped}$|^{escaped} -- @"


def selected_patterns(spec: dict[str, Any], selected: list[str]) -> list[str]:
    """behave ``--name`` patterns for the selected scenarios (test keys ``<feature>::<scenario>``,
    ``<feature>::<outline> [<row id>]`` for a row of an outline) of this spec's feature; within
    the spec's own ``scenario`` when it names one."""
    feature = str(spec.get("feature") or "feature_text")
    patterns = []
    for key in selected:
        file, _, name = key.partition("::")
        row = None
        if name.endswith("]") and " [" in name:
            name, _, row = name[:-1].rpartition(" [")
        if file != feature or not name or ("scenario" in spec and name != spec["scenario"]):
            continue
        if row is None:
            patterns.append(scenario_name_pattern(name))
        else:  # behave names an outline's row "<outline> -- @<row id> <examples name>"
            patterns.append(f"^{re.escape(name)} -- @{re.escape(row)}(?: |$)")
    return list(dict.fromkeys(patterns))


def behave_argv(
    *, feature: Path, report: Path, spec: dict[str, Any], names: list[str] | None = None
) -> list[str]:
    """``names``: run only the scenarios matching these patterns (a selection), instead of the
    spec's ``scenario``."""
    argv = [sys.executable, "-m", "behave", str(feature), "--no-color"]
    argv += [f"--format={FORMATTER}", f"--outfile={report}"]
    # "--option=value": a value starting with "-" must not be taken for an option.
    if "tags" in spec:
        argv.append(f"--tags={spec['tags']}")
    if names is not None:
        argv += [f"--name={pattern}" for pattern in names]
    elif "scenario" in spec:
        argv.append(f"--name={scenario_name_pattern(spec['scenario'])}")
    return argv


def run(ctx: RunContext) -> Outcome:
    spec = ctx.spec
    try:
        cwd = resolve_workspace(ctx.workspace_root, spec["workspace"])
        feature = resolve_feature(cwd, spec["feature"]) if "feature" in spec else None
    except WorkspaceError as exc:
        return Outcome(Status.ERROR, summarize([]), str(exc))

    names = None
    if ctx.selected is not None and ctx.handout is None:
        names = selected_patterns(spec, ctx.selected)
        if not names:
            why = f"none of the {len(ctx.selected)} selected scenarios is in this case's feature"
            return Outcome(Status.SKIPPED, summarize([]), why)
    with private_dir("anvil-bdd-") as private:
        if feature is None:
            try:
                feature = _stage_feature_text(cwd, private, spec["feature_text"])
            except WorkspaceError as exc:
                return Outcome(Status.ERROR, summarize([]), str(exc))
        report = private / "steps.jsonl"
        report.touch()
        prepare_scratch(private, ctx.sandbox)
        recorder = StepRecorder(ctx, report, feature_text=feature if "feature_text" in spec else None)
        if ctx.handout is not None:
            staged = feature

            def argv_for(keys: list[str], report: Path) -> list[str]:
                names = selected_patterns(spec, keys)
                return behave_argv(feature=staged, report=report, spec=spec, names=names)

            return run_batches(ctx, ctx.handout, recorder, argv_for, cwd=cwd, private=private)
        argv = behave_argv(feature=feature, report=report, spec=spec, names=names)
        result = run_tool(ctx, argv, cwd=cwd, private=private, on_tick=recorder.read)
    return recorder.outcome(result)


def collect(ctx: RunContext) -> tuple[list[str], str | None]:
    """The keys of the scenarios the case's run would run (its tags, scenario and selection), from
    behave's own dry run through the Anvil formatter; or none and why."""
    spec = ctx.spec
    try:
        cwd = resolve_workspace(ctx.workspace_root, spec["workspace"])
        feature = resolve_feature(cwd, spec["feature"]) if "feature" in spec else None
    except WorkspaceError as exc:
        return [], str(exc)
    names = selected_patterns(spec, ctx.selected) if ctx.selected is not None else None
    if names == []:
        return [], "none of the selected scenarios is in this case's feature"
    with private_dir("anvil-bdd-collect-") as private:
        if feature is None:
            try:
                feature = _stage_feature_text(cwd, private, spec["feature_text"])
            except WorkspaceError as exc:
                return [], str(exc)
        report = private / "steps.jsonl"
        report.touch()
        prepare_scratch(private, ctx.sandbox)
        argv = [*behave_argv(feature=feature, report=report, spec=spec, names=names), "--dry-run"]
        result = run_tool(ctx, argv, cwd=cwd, private=private)
        if result.stopped or result.timed_out or result.exit_code is None:
            return [], "behave's dry run did not finish"
        keys = []
        for line in report.read_text("utf-8").splitlines():
            event = json.loads(line) if line.strip() else {}
            # A dry run leaves the chosen scenarios' steps untested; the others are skipped.
            if event.get("type") != "step" or event.get("status") == "skipped":
                continue
            details = {k: event[k] for k in ("feature", "scenario", "outline", "example") if event.get(k)}
            keys.append(test_key(ctx.snapshot, StepView(event.get("text", ""), "passed", None, details)))
    found = [key for key in dict.fromkeys(keys) if key]
    return found, None if found else "behave's dry run listed no scenario"


def _stage_feature_text(workspace: Path, private: Path, text: str) -> Path:
    """Write ``text`` as a feature beside links to the workspace's ``features/`` entries."""
    source = workspace / "features"
    if not source.is_dir():
        raise WorkspaceError(
            f"workspace {workspace.name!r} has no features/ directory (for feature_text) on this worker"
        )
    staged = private / "features"
    staged.mkdir()
    for entry in source.iterdir():
        if entry.suffix != ".feature" and entry.name != FEATURE_TEXT_FILE:
            (staged / entry.name).symlink_to(entry.resolve())
    path = staged / FEATURE_TEXT_FILE
    path.write_text(text, encoding="utf-8")
    return path


class StepRecorder:
    """Turns the formatter's lines into steps as they appear, and the finished run into one outcome."""

    def __init__(self, ctx: RunContext, report: Path, *, feature_text: Path | None) -> None:
        self.ctx, self.report = ctx, report
        self.feature_text = str(feature_text) if feature_text is not None else None
        self.tail = JsonLinesTail(self.report, source="the behave formatter")
        self.statuses: list[str] = []
        self.scenarios: list[dict[str, Any]] = []
        self.failures: list[str] = []  # "scenario: keyword text: error", first lines only
        self.completed = False
        self.lost = False

    def follow(self, report: Path) -> None:
        """Read the next behave run's report (a shard runs behave once per batch it takes)."""
        self.tail = JsonLinesTail(report, source="the behave formatter")
        self.completed = False

    def read(self) -> None:
        """Record every line the formatter finished writing since the last call."""
        if self.lost:
            return
        for event in self.tail.new_events():
            if self.lost:
                return
            self._handle(event)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        for key in ("location", "scenario_location"):
            if key in event:
                event[key] = self._relocate(event[key])
        if kind == "step":
            self._emit(self._step_record(len(self.statuses) + 1, event))
            if event.get("error") and event["status"] not in ("passed", "skipped"):
                where = f"{event['scenario']}: {event['keyword']} {event['text']}"
                self.failures.append(where + _first_line(event["error"]))
        elif kind == "scenario":
            self.scenarios.append(event)
        elif kind == "end":
            self.completed = True

    def _relocate(self, location: str) -> str:
        # The staged feature_text file lives in a temporary directory: name it by the spec field.
        if self.feature_text and location.rsplit(":", 1)[0].endswith(FEATURE_TEXT_FILE):
            return "feature_text:" + location.rsplit(":", 1)[-1]
        return location

    def _step_record(self, seq: int, event: dict[str, Any]) -> StepRecord:
        cap = self.ctx.output_cap
        error, output = event.get("error"), event.get("output")
        details = {
            key: event[key]
            for key in (
                "feature",
                "rule",
                "scenario",
                "outline",
                "example",
                "background",
                "step_type",
                "location",
                "scenario_location",
                "tags",
                "table",
                "doc_string",
            )
            if event.get(key) is not None
        }
        details["behave_status"] = event["status"]
        if len(details.get("table", ())) > TABLE_ROWS_KEPT:
            details["table"] = details["table"][:TABLE_ROWS_KEPT]
            details["table_truncated"] = True
        if len(details.get("doc_string", "")) > cap:
            details["doc_string"] = details["doc_string"][:cap]
            details["doc_string_truncated"] = True
        return StepRecord(
            seq=seq,
            name=event["text"],
            keyword=event["keyword"][:32],  # the column's width; Gherkin keywords are short
            status=STEP_STATUS.get(event["status"], StepStatus.ERROR),
            started_at=_time(event.get("started")),
            finished_at=_time(event.get("finished")),
            duration_s=round(float(event.get("duration") or 0.0), 6) if event.get("finished") else None,
            output=output[:cap] if output else None,
            output_truncated=bool(output and len(output) > cap),
            error=error[:cap] if error else None,
            details=details,
        )

    def _emit(self, step: StepRecord) -> None:
        if not self.ctx.emit(step):
            # Another attempt owns the execution now: stop the test at once (self-fencing).
            self.lost = True
            self.ctx.stop_reason.append("the attempt no longer owns the execution")
            self.ctx.stop.set()
            return
        self.statuses.append(step.status)

    def summary(self) -> dict[str, Any]:
        # Top-level counts are the recorded steps; "scenarios" counts behave's scenario statuses.
        return {**summarize(self.statuses), "scenarios": summarize([s["status"] for s in self.scenarios])}

    def outcome(self, result: ProcessResult) -> Outcome:
        if self.lost:
            return Outcome(Status.ERROR, self.summary(), "attempt lost its lease")
        if result.stopped:
            why = "stopped: " + (self.ctx.stop_reason[0] if self.ctx.stop_reason else "stop requested")
            return Outcome(Status.CANCELLED, self.summary(), why)
        if result.timed_out:
            return Outcome(
                Status.TIMEOUT,
                self.summary(),
                f"test timeout after {self.ctx.timeout_s:g}s: behave's process group killed",
            )
        code = result.exit_code
        if code is None:
            return Outcome(Status.ERROR, self.summary(), result.output.strip() or "behave did not start")
        if result.limit:
            return Outcome(Status.ERROR, self.summary(), f"{result.limit}: {_last_lines(result.output)}")
        if not self.completed:
            return Outcome(
                Status.ERROR,
                self.summary(),
                f"behave ended (exit code {code}) before finishing its report: {_last_lines(result.output)}",
            )
        return self.judge(code, result.output)

    def judge(self, code: int, output: str) -> Outcome:
        summary = self.summary()
        if not self.scenarios and code != 0:
            return Outcome(
                Status.ERROR,
                summary,
                f"behave exited with code {code} without running any scenario: {_last_lines(output)}",
            )
        if not self.scenarios:
            return Outcome(Status.ERROR, summary, "behave found no scenario to run in the feature")
        if not any(s.get("selected") for s in self.scenarios):
            return Outcome(Status.ERROR, summary, "no scenario matched the selection " + self._selection())
        broken = [s for s in self.scenarios if s["status"] in SCENARIO_BROKEN]
        failed = [s for s in self.scenarios if s["status"] in SCENARIO_FAILED]
        if broken:
            reasons = [f"{s['scenario']}: {s['status']}" + _first_line(s.get("error")) for s in broken]
            return Outcome(
                Status.ERROR,
                summary,
                f"{len(broken)} scenario(s) hit an error in behave's harness (a hook, a cleanup, an abort): "
                + "; ".join(_first_lines(reasons, 5))
                + (f" (and {len(failed)} failed)" if failed else ""),
            )
        if failed:
            return Outcome(
                Status.FAILED,
                summary,
                f"{len(failed)} of {len(self.scenarios)} scenarios failed: "
                + "; ".join(_first_lines(self.failures or [s["scenario"] for s in failed], 5)),
            )
        if code != 0:
            return Outcome(
                Status.ERROR,
                summary,
                f"behave exited with code {code} although no scenario failed: {_last_lines(output)}",
            )
        return Outcome(Status.PASSED, summary)

    def _selection(self) -> str:
        spec = self.ctx.spec
        parts = [f"{key}={spec[key]!r}" for key in ("scenario", "tags") if key in spec]
        return f"({', '.join(parts)})" if parts else "(behave's configuration selected none)"


def _time(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(float(epoch), UTC) if epoch is not None else None


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return f" ({lines[0]})" if lines else ""


def _first_lines(items: Iterable[str], limit: int) -> list[str]:
    items = list(items)
    shown = [item[:300] for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"… {len(items) - limit} more")
    return shown


def _last_lines(output: str) -> str:
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    return "\n".join(lines[-MESSAGE_LINES:])[-4000:] or "(no output)"
