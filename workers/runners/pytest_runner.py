"""pytest tests (kind ``pytest``): one step per test item, recorded as each one finishes.

The worker runs ``python -m pytest`` with its own interpreter, in the workspace, inside the sandbox,
with workers.pytest_plugin loaded (``-p``). The plugin appends one JSON line per finished item to a
file in a private temporary directory outside the workspace; every sandbox tick reads the new lines
and records them as steps, so finished tests are visible while later ones still run. Results come
from pytest's own report objects through the plugin, never from its terminal output.

Importing the plugin: the scrubbed environment has no PYTHONPATH, and the worker's install may be a
wheel, an editable install or a bare source checkout. The runner therefore puts on PYTHONPATH a
private directory holding only a link to Anvil's ``workers`` package, so the test process can import
``workers.pytest_plugin`` and nothing else of Anvil. The workspace (the current directory, first on
``python -m``'s path) still wins: a workspace with its own ``workers/__init__.py`` cannot be run.

The runner writes nothing into the workspace: the cache plugin is disabled (``-p no:cacheprovider``,
so runs do not depend on earlier ones) and bytecode is not written (PYTHONDONTWRITEBYTECODE), which
keeps a workspace shared by several workers or runs untouched.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from anvil.domain.enums import StepStatus
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord, summarize
from anvil.domain.workspaces import WorkspaceError, resolve_workspace
from workers.confinement import prepare_scratch
from workers.handout import serving
from workers.runners.base import RunContext
from workers.runners.jsonl import JsonLinesTail
from workers.runners.tooling import private_dir, run_tool
from workers.sandbox import ProcessResult

log = logging.getLogger("anvil.worker")

PLUGIN = "workers.pytest_plugin"
FAILING_STEPS = frozenset({StepStatus.FAILED.value, StepStatus.ERROR.value})
# pytest's exit codes (pytest.ExitCode) that end as ERROR, and what they mean.
EXIT_MEANING = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
# The order of pytest's own summary line.
SUMMARY_ORDER = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")
MESSAGE_LINES = 12
DECORATION = re.compile(r"^[=!_-]{3,}\s*(.*?)\s*[=!_-]{3,}$")
# pytest options (and common plugins') that take their value as the next argument.
VALUE_OPTIONS = frozenset(
    (
        "-k -m -p -c -o -W -r -n --tb --rootdir --confcutdir --ignore --ignore-glob --deselect --junitxml "
        "--junit-xml --junit-prefix --maxfail --durations --durations-min --basetemp --log-level --log-file "
        "--log-file-level --log-format --log-date-format --log-cli-level --log-cli-format "
        "--log-cli-date-format "
        "--capture --import-mode --override-ini --config-file --dist --numprocesses --maxprocesses --timeout "
        "--timeout-method --cov --cov-report --cov-config --color --code-highlight --show-capture "
        "--doctest-glob --assert --verbosity --log-auto-indent --max-worker-restart --hypothesis-seed "
        "--hypothesis-profile --reruns --reruns-delay"
    ).split()
)


def pytest_argv(*, report: Path, text_cap: int, args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        PLUGIN,
        f"--anvil-report={report}",
        f"--anvil-text-cap={text_cap}",
        "-p",
        "no:cacheprovider",
        *args,
    ]


def options_only(args: list[str]) -> list[str]:
    """The case's arguments without its positional paths (a selection replaces them)."""
    kept: list[str] = []
    takes_value = False
    for arg in args:
        if takes_value or arg.startswith("-"):
            kept.append(arg)
            takes_value = not takes_value and arg in VALUE_OPTIONS
    return kept


def selected_args(cwd: Path, private: Path, selected: list[str], args: list[str]) -> list[str] | None:
    """pytest's arguments for running only ``selected`` (node ids), or None when none of their files
    exists any more.

    The files of the selected tests are pytest's positional arguments, read from an arguments
    file (``@FILE``) in the private directory, so no other file is collected; the plugin deselects
    the other tests of those files (``--anvil-select``). Node ids are not passed as positional
    arguments: pytest refuses the whole run (exit 4) when one names a test that no longer exists.
    """
    files = []
    for key in selected:
        path = key.split("::", 1)[0]
        parts = PurePosixPath(path).parts
        if path and not path.startswith("/") and ".." not in parts and (cwd / path).exists():
            files.append(path)
    if not files:
        return None
    listed = private / "selected.txt"
    listed.write_text("".join(f"{key}\n" for key in selected), encoding="utf-8")
    positional = private / "args.txt"
    positional.write_text("".join(f"{path}\n" for path in dict.fromkeys(files)), encoding="utf-8")
    return [*options_only(args), f"--anvil-select={listed}", f"@{positional}"]


def collect(ctx: RunContext) -> tuple[list[str], str | None]:
    """The node ids the case's run would run (its arguments and selection), collected by pytest in
    the sandbox as the run itself would be; or no ids and why (the run then goes unsharded, and
    reports the problem as its own steps would)."""
    try:
        cwd = resolve_workspace(ctx.workspace_root, ctx.spec["workspace"])
    except WorkspaceError as exc:
        return [], str(exc)
    with private_dir("anvil-collect-") as private:
        listed = private / "collected.txt"
        listed.touch()  # before prepare_scratch: the sandbox user writes into it
        args = list(ctx.spec.get("args", []))
        if ctx.selected is not None:
            chosen = selected_args(cwd, private, ctx.selected, args)
            if chosen is None:
                return [], "none of the selected tests' files is in the workspace"
            args = chosen
        prepare_scratch(private, ctx.sandbox)
        argv = [
            sys.executable, "-m", "pytest", "-p", PLUGIN, f"--anvil-collected={listed}",
            "-p", "no:cacheprovider", "--collect-only", "-q", *args,
        ]  # fmt: skip
        result = run_tool(ctx, argv, cwd=cwd, private=private)
        if result.stopped or result.timed_out or result.exit_code != 0:
            return [], f"collection {_exit(result.exit_code) if result.exit_code is not None else 'stopped'}"
        return list(dict.fromkeys(line for line in listed.read_text("utf-8").splitlines() if line)), None


def run(ctx: RunContext) -> Outcome:
    spec = ctx.spec
    try:
        cwd = resolve_workspace(ctx.workspace_root, spec["workspace"])
    except WorkspaceError as exc:
        return Outcome(Status.ERROR, summarize([]), str(exc))

    with private_dir("anvil-pytest-") as private:
        report = private / "report.jsonl"
        report.touch()
        args = list(spec.get("args", []))
        handout = ctx.handout
        # A shard taking its tests as it goes collects the whole plan: it may be handed any of it;
        # or, when the plan is an earlier run's list to confirm, the case's own tests.
        selected = ctx.selected if handout is None else None if handout.collects else handout.plan
        if selected is not None:
            chosen = selected_args(cwd, private, selected, args)
            if chosen is None:
                why = f"none of the files of the {len(selected)} selected tests is in the workspace any more"
                return Outcome(Status.SKIPPED, summarize([]), why)
            args = chosen
        if handout is not None and handout.collects:
            handout.collected = private / "collected.txt"
            handout.collected.touch()  # before prepare_scratch: the sandbox user writes into it
        prepare_scratch(private, ctx.sandbox)
        recorder = StepRecorder(ctx, report)
        with contextlib.ExitStack() as serving_tests:
            if handout is not None:
                sock = serving_tests.enter_context(serving(handout, private / "handout.sock", ctx.stop))
                args = [f"--anvil-handout={sock}", *args]
                if handout.collected is not None:
                    args = [f"--anvil-collected={handout.collected}", *args]
            argv = pytest_argv(report=report, text_cap=ctx.output_cap, args=args)
            result = run_tool(ctx, argv, cwd=cwd, private=private, on_tick=recorder.read)
        if handout is not None:
            handout.give_back_unstarted(recorder.names)
    return recorder.outcome(result)


class StepRecorder:
    """Turns the plugin's lines into steps as they appear, and the finished run into one outcome."""

    def __init__(self, ctx: RunContext, report: Path) -> None:
        self.ctx, self.report = ctx, report
        self.tail = JsonLinesTail(self.report, source="the pytest plugin")
        # A recovered shard's steps its earlier attempts finished: counted, numbered after, not rerun.
        carried = ctx.handout.carried if ctx.handout is not None else []
        self.statuses: list[str] = [step["status"] for step in carried]
        self.names: set[str] = set()  # the tests this attempt recorded a step for
        self.pytest_counts: Counter[str] = Counter(
            category for step in carried for category in (step["details"].get("categories") or ())
        )
        self.running: dict[str, float] = {}  # node id -> start time, for items that have not finished
        # Shards that all collect the case's own tests would each report the same collection
        # errors: the first shard alone records them.
        handout = ctx.handout
        self.records_collection = handout is None or not handout.collects or handout.index == 1
        self.session_started = False
        self.lost = False
        self.broken: str | None = None

    def read(self) -> None:
        """Record every line the plugin finished writing since the last call."""
        if self.lost or self.broken:
            return
        try:
            self._read()
        except Exception as exc:  # an unreadable record must stop pytest, not leave it running unrecorded
            log.exception("recording pytest results of %s failed", self.ctx.execution_id)
            self.broken = f"{type(exc).__name__}: {exc}"
            self.ctx.stop.set()

    def _read(self) -> None:
        for event in self.tail.new_events():
            if self.lost:
                return
            self._handle(event)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "session":
            self.session_started = True
        elif kind == "start":
            self.running[event["nodeid"]] = event["at"]
        elif kind == "collect" and not self.records_collection:
            return
        elif kind in ("item", "collect"):
            self.running.pop(event["nodeid"], None)
            self.pytest_counts.update(event["categories"])
            self._emit(_step_record(len(self.statuses) + 1, event))

    def _emit(self, step: StepRecord) -> None:
        if not self.ctx.emit(step):
            # Another attempt owns the execution now: stop the test at once (self-fencing).
            self.lost = True
            self.ctx.stop_reason.append("the attempt no longer owns the execution")
            self.ctx.stop.set()
            return
        self.statuses.append(step.status)
        self.names.add(step.name)

    def _interrupted(self, status: StepStatus, error: str) -> None:
        """Record the items that were still running when the run ended from outside."""
        now = datetime.now(UTC)
        for nodeid, started in list(self.running.items()):
            if self.lost:
                return
            begun = _time(started)
            self._emit(
                StepRecord(
                    seq=len(self.statuses) + 1,
                    name=nodeid,
                    status=status,
                    started_at=begun,
                    finished_at=now,
                    duration_s=round((now - begun).total_seconds(), 6),
                    error=error,
                )
            )
        self.running.clear()

    def summary(self, exit_code: int | None) -> dict[str, Any]:
        # Steps count once per item; "pytest" holds pytest's own counts, where one item can count
        # twice (e.g. "1 failed, 1 error" for a test failing in call and in teardown).
        return {
            **summarize(self.statuses),
            "pytest": {"exit_code": exit_code, "counts": dict(sorted(self.pytest_counts.items()))},
        }

    def outcome(self, result: ProcessResult) -> Outcome:
        if self.lost:
            return Outcome(Status.ERROR, self.summary(None), "attempt lost its lease")
        if self.broken:
            return Outcome(Status.ERROR, self.summary(None), f"recording the results failed: {self.broken}")
        if result.stopped:
            why = "stopped: " + (self.ctx.stop_reason[0] if self.ctx.stop_reason else "stop requested")
            self._interrupted(StepStatus.CANCELLED, why)
            return Outcome(Status.CANCELLED, self.summary(None), why)
        if result.timed_out:
            where = f"while running {', '.join(self.running)}" if self.running else "outside any test"
            why = f"test timeout after {self.ctx.timeout_s:g}s: process group killed {where}"
            self._interrupted(StepStatus.TIMEOUT, f"test timeout after {self.ctx.timeout_s:g}s")
            return Outcome(Status.TIMEOUT, self.summary(None), why)
        code = result.exit_code
        if code is None:
            return Outcome(Status.ERROR, self.summary(None), result.output.strip() or "pytest did not start")
        if self.running:
            self._interrupted(StepStatus.ERROR, f"the pytest process ended ({_exit(code)}) during this test")
        summary = self.summary(code)
        if result.limit:
            return Outcome(Status.ERROR, summary, f"{result.limit}: {_last_lines(result.output)}")
        if code in (0, 1) and not self.session_started:
            return Outcome(
                Status.ERROR,
                summary,
                f"pytest exited with code {code} but the Anvil plugin recorded nothing: "
                + _last_lines(result.output),
            )
        handout = self.ctx.handout
        if handout is not None and handout.failed:
            return Outcome(Status.ERROR, summary, handout.failed)
        if code == 0 and handout is not None and not handout.taken and not handout.carried:
            return Outcome(Status.SKIPPED, summary, "every test of the plan was taken by other shards")
        if code == 0 and any(status in FAILING_STEPS for status in self.statuses):
            code = 1  # a test an earlier attempt of this shard finished failed
        if code == 0:
            return Outcome(Status.PASSED, summary)
        if code == 1:
            return Outcome(Status.FAILED, summary, "pytest: " + self._counts_line())
        if code == 5:
            return Outcome(Status.ERROR, summary, "no tests collected")
        meaning = f" ({EXIT_MEANING[code]})" if code in EXIT_MEANING else ""
        return Outcome(Status.ERROR, summary, f"pytest {_exit(code)}{meaning}: {_last_lines(result.output)}")

    def _counts_line(self) -> str:
        parts = []
        for category in SUMMARY_ORDER:
            n = self.pytest_counts.get(category, 0)
            if n:
                parts.append(f"{n} {'errors' if category == 'error' and n > 1 else category}")
        return ", ".join(parts) or "failed"


def _step_record(seq: int, event: dict[str, Any]) -> StepRecord:
    try:
        status = StepStatus(event["status"])
    except ValueError:
        status = StepStatus.ERROR
    details: dict[str, Any] = {
        key: event[key]
        for key in ("phases", "categories", "location", "markers", "message", "xfail_reason")
        if key in event
    }
    details["kind"] = "collection" if event["event"] == "collect" else "test"
    if event.get("error_truncated"):
        details["error_truncated"] = True
    if event["event"] == "collect":
        at = _time(event["at"])
        started, finished, duration = at, at, None
    else:
        started, finished = _time(event["started"]), _time(event["finished"])
        duration = round(float(event["duration"]), 6)
    return StepRecord(
        seq=seq,
        name=event["nodeid"] or "<session>",
        status=status,
        started_at=started,
        finished_at=finished,
        duration_s=duration,
        output=event.get("output"),
        output_truncated=bool(event.get("output_truncated")),
        error=event.get("error"),
        details=details,
    )


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exit code {code}"


def _last_lines(output: str) -> str:
    """pytest's own closing message: the last non-empty lines of its output, without the rulers."""
    lines = []
    for line in output.splitlines():
        line = line.strip()
        match = DECORATION.match(line)
        if match:
            line = match.group(1)
        if line:
            lines.append(line)
    # A usage error is named on "ERROR:" lines, before the session header; else pytest ends with it.
    usage = [line for line in lines if line.startswith("ERROR:") or ": error: " in line]
    picked = usage + lines[-1:] if usage else lines[-MESSAGE_LINES:]
    return "\n".join(picked)[-4000:] or "(no output)"
