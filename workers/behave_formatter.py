"""A behave formatter that writes one JSON line per Gherkin step as soon as it finishes.

Loaded inside the test process (``-f workers.behave_formatter:AnvilFormatter -o FILE``); the BDD
runner tails FILE and records each line as a step. Only the standard library and behave are
imported here: this module runs in the sandboxed test process, not in the worker.

Lines, in order:

- ``{"type": "step", ...}``: keyword as written, text, status, duration, error, and where the step
  sits (feature, rule, scenario, outline example row, background or not).
- ``{"type": "scenario", ...}``: a scenario's final status once it is over (after its hooks).
- ``{"type": "end"}``: behave finished the run normally; missing when behave crashed.

behave only reports a result for steps it ran. Steps it did not run (after a failing or undefined
step, or in a scenario not selected by tags) are written, with their final status, when their
scenario is over, so every step behave lists in its own reports is written exactly once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from behave.formatter.base import Formatter
from behave.model import Rule, ScenarioOutline

# Kept per line: a failure message or traceback past this is cut (the worker caps it again).
ERROR_CAP = 16 * 1024


class AnvilFormatter(Formatter):
    name = "anvil"
    description = "JSON lines, one per finished step (read live by Anvil's BDD runner)"

    def __init__(self, stream_opener: Any, config: Any) -> None:
        super().__init__(stream_opener, config)
        self.stream = self.open()
        self.current_feature: Any = None
        self.current_scenario: Any = None
        self.unreported: list[Any] = []  # steps of the current scenario without a line yet
        self.step_started: float | None = None

    # -- behave's formatter protocol ---------------------------------------------------------------

    def feature(self, feature: Any) -> None:
        self._finish_scenario()
        self.current_feature = feature

    def scenario(self, scenario: Any) -> None:
        self._finish_scenario()
        self.current_scenario = scenario
        self.unreported = list(scenario.all_steps)

    def match(self, match: Any) -> None:
        # Called right before the step runs (or is found undefined).
        self.step_started = time.time()

    def result(self, step: Any) -> None:
        self.unreported = [s for s in self.unreported if s is not step]
        finished = time.time()
        started = self.step_started if self.step_started is not None else finished - (step.duration or 0.0)
        self._write_step(step, ran=(started, finished))
        self.step_started = None

    def eof(self) -> None:
        self._finish_scenario()
        self.current_feature = None

    def close(self) -> None:
        self._finish_scenario()
        self._write({"type": "end"})
        self.close_stream()

    # -- lines -------------------------------------------------------------------------------------

    def _finish_scenario(self) -> None:
        scenario = self.current_scenario
        if scenario is None:
            return
        for step in self.unreported:
            self._write_step(step, ran=None)
        self.unreported = []
        self.current_scenario = None
        line = {"type": "scenario", **self._where(scenario), "status": scenario.status.name}
        line["selected"] = bool(
            scenario.should_run_with_tags(self.config.tag_expression)
            and scenario.should_run_with_name_select(self.config)
        )
        if scenario.status.has_failed() and getattr(scenario, "error_message", None):
            line["error"] = _cap(scenario.error_message)
        self._write(line)

    def _write_step(self, step: Any, *, ran: tuple[float, float] | None) -> None:
        """``ran`` is (started, finished) for a step behave ran or found undefined; None otherwise."""
        scenario = self.current_scenario
        line: dict[str, Any] = {
            "type": "step",
            **self._where(scenario),
            "keyword": step.keyword,
            "step_type": step.step_type,
            "text": step.name,
            "location": str(step.location),
            "background": any(s is step for s in (getattr(scenario, "background_steps", None) or [])),
            "status": step.status.name,
            "duration": float(step.duration or 0.0),
            "started": ran[0] if ran else None,
            "finished": ran[1] if ran else None,
            "error": _step_error(step),
        }
        if step.table is not None:
            line["table"] = [list(step.table.headings), *[list(row.cells) for row in step.table.rows]]
        if step.text is not None:
            line["doc_string"] = str(step.text)
        captured = getattr(getattr(step, "captured", None), "output", "")
        if captured and step.status.has_failed():
            line["output"] = _cap(captured)
        self._write(line)

    def _where(self, scenario: Any) -> dict[str, Any]:
        where: dict[str, Any] = {
            "feature": getattr(self.current_feature, "name", None),
            "scenario": scenario.name,
            "scenario_location": str(scenario.location),
            "tags": sorted(str(t) for t in scenario.effective_tags),
        }
        parent = scenario.parent
        if isinstance(parent, ScenarioOutline):
            where["outline"] = parent.name
            row = getattr(scenario, "_row", None)
            if row is not None:
                examples = _examples_of(parent, row)
                where["example"] = {
                    "id": getattr(row, "id", None),
                    "name": getattr(examples, "name", None),
                    "line": row.line,
                    "values": dict(zip(row.headings, row.cells, strict=False)),
                }
            parent = parent.parent
        if isinstance(parent, Rule):
            where["rule"] = parent.name
        return where

    def _write(self, line: dict[str, Any]) -> None:
        self.stream.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self.stream.flush()


def _examples_of(outline: Any, row: Any) -> Any:
    for examples in outline.examples:
        if examples.table is not None and any(r is row for r in examples.table.rows):
            return examples
    return None


def _step_error(step: Any) -> str | None:
    status = step.status.name
    if status in ("undefined", "untested_undefined"):
        return f"undefined step: {step.keyword} {step.name} (no step definition matches it)"
    if step.status.has_failed() and step.error_message:
        return _cap(step.error_message)
    return None


def _cap(text: str) -> str:
    text = str(text)
    return text if len(text) <= ERROR_CAP else text[:ERROR_CAP] + "\n... [truncated]"
