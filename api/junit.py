"""JUnit XML for finished (or running) executions: a pure function of executions and their steps.

One ``<testsuite>`` per case execution, inside one ``<testsuites>``; one ``<testcase>`` per test:

- a pytest node (a case of kind ``pytest``): mirrors pytest's own ``--junitxml``
  (xunit2): classname/name from the node id (``tests/test_x.py::TestA::test_b[1]`` becomes
  ``tests.test_x.TestA`` / ``test_b[1]``); a failing call is a ``<failure>``, a failing setup or
  teardown an ``<error>`` ("failed on setup with ..."), skips and xfails ``<skipped>``, an xpass
  (non-strict) passes; a test failing in its call *and* its teardown is two testcases, as pytest
  writes it, so tests/failures/errors/skipped equal pytest's own counts;
- a BDD scenario (steps grouped by their scenario): mirrors behave's junit reporter: a scenario with
  an error, undefined or pending step is an ``<error>`` (behave counts an undefined step as an
  error), else one with a failed step a ``<failure>``; a scenario whose steps were all skipped is
  ``<skipped>``; classname ``<feature file>.<Feature name>`` (the file relative to ``features/``),
  name the scenario's;
- a manual test: one testcase for the whole test (it is one test a person performs); a failed step
  makes a ``<failure>``, a blocked one an ``<error>``, a step without a result yet ``<skipped>``;
  every step and its recorded result are in ``<system-out>``;
- a generic step: one testcase per command; failed -> ``<failure>``, error/timeout -> ``<error>``,
  skipped/not run/cancelled -> ``<skipped>``.

When an execution's own result is not explained by its testcases (it ended FAILED, ERROR, TIMEOUT
or ABORTED with no failing testcase, e.g. the workspace was missing), a testcase named
``(execution)`` carries that result, so a CI job never reads a failed run as green. An execution
with no steps at all (cancelled before it started, still queued) is that one testcase, skipped.

Control characters that XML cannot hold are written as ``#xNN``, as pytest does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from db.models import Execution, StepTrace

FAILURE, ERROR, SKIPPED = "failure", "error", "skipped"
MESSAGE_CAP = 500
# Step statuses of generic steps (and of pytest items that ended without pytest's verdict).
GENERIC_RESULT = {
    "failed": FAILURE,
    "error": ERROR,
    "timeout": ERROR,
    "undefined": ERROR,
    "pending": ERROR,
    "blocked": ERROR,
    "skipped": SKIPPED,
    "xfailed": SKIPPED,
    "not_run": SKIPPED,
    "cancelled": SKIPPED,
}
EXECUTION_RESULT = {"FAILED": FAILURE, "ERROR": ERROR, "TIMEOUT": ERROR, "ABORTED": ERROR}
_ILLEGAL = re.compile("[^\u0009\u000a\u000d\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SECTION = re.compile(r"^----- (setup|call|teardown) -----$", re.MULTILINE)


@dataclass
class Result:
    tag: str  # failure | error | skipped
    message: str
    text: str | None = None
    type: str | None = None


@dataclass
class Case:
    classname: str
    name: str
    time: float = 0.0
    results: list[Result] = field(default_factory=list)
    out: str | None = None


def junit_xml(*, name: str, runs: Sequence[tuple[Execution, Sequence[StepTrace]]]) -> bytes:
    """The report of ``runs`` (each a case execution and the steps of its last attempt)."""
    root = ET.Element("testsuites", name=_clean(name))
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for index, (execution, steps) in enumerate(runs):
        suite = _testsuite(index, execution, steps)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        total_time += float(suite.get("time", "0"))
        root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def cases_of(execution: Execution, steps: Sequence[StepTrace]) -> list[Case]:
    """The testcases of one case execution, by the kind of test it ran."""
    snapshot = execution.case_snapshot or {}
    title = str(snapshot.get("name") or execution.id)
    kind = snapshot.get("kind")
    if kind == "manual":
        cases = [_manual_case(title, steps)] if steps else []
    elif kind == "bdd":
        cases = _scenario_cases(steps)
    elif kind == "pytest":
        cases = [case for step in steps for case in _pytest_cases(step)]
    else:
        cases = [_generic_case(title, step) for step in steps]
    verdict = EXECUTION_RESULT.get(execution.status)
    explained = any(r.tag in (FAILURE, ERROR) for case in cases for r in case.results)
    if verdict and not explained:
        message = f"execution {execution.status}: {execution.error or 'no reason recorded'}"
        cases.append(Case(title, "(execution)", results=[Result(verdict, message, execution.error)]))
    elif not cases:
        result = [] if execution.status == "PASSED" else [Result(SKIPPED, _not_run(execution))]
        cases.append(Case(title, "(execution)", results=result))
    return cases


def _testsuite(index: int, execution: Execution, steps: Sequence[StepTrace]) -> ET.Element:
    snapshot = execution.case_snapshot or {}
    cases = cases_of(execution, steps)
    count = {tag: sum(r.tag == tag for c in cases for r in c.results) for tag in (FAILURE, ERROR, SKIPPED)}
    if execution.started_at and execution.finished_at:
        elapsed = (execution.finished_at - execution.started_at).total_seconds()
    else:
        elapsed = sum(c.time for c in cases)
    suite = ET.Element(
        "testsuite",
        id=str(index),
        name=_clean(str(snapshot.get("name") or execution.id)),
        tests=str(len(cases)),
        failures=str(count[FAILURE]),
        errors=str(count[ERROR]),
        skipped=str(count[SKIPPED]),
        time=f"{max(elapsed, 0.0):.3f}",
        timestamp=_timestamp(execution.started_at or execution.created_at),
        hostname=_clean(execution.worker or ""),
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("anvil.execution_id", execution.id),
        ("anvil.test_case_id", execution.test_case_id),
        ("anvil.kind", snapshot.get("kind")),
        ("anvil.status", execution.status),
        ("anvil.attempt", execution.attempt),
        ("anvil.error", execution.error),
    ):
        if value is not None:
            ET.SubElement(properties, "property", name=key, value=_clean(str(value)))
    for case in cases:
        suite.append(_testcase(case))
    return suite


def _testcase(case: Case) -> ET.Element:
    element = ET.Element("testcase", classname=_clean(case.classname), name=_clean(case.name))
    element.set("time", f"{max(case.time, 0.0):.3f}")
    for result in case.results:
        child = ET.SubElement(element, result.tag, message=_clean(_short(result.message)))
        if result.type:
            child.set("type", _clean(result.type))
        if result.text:
            child.text = _clean(result.text)
    if case.out:
        ET.SubElement(element, "system-out").text = _clean(case.out)
    return element


# -- pytest --------------------------------------------------------------------------------------


def mangle_node_id(nodeid: str) -> tuple[str, str]:
    """(classname, name) of a pytest node id, as pytest's junitxml derives them."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _pytest_cases(step: StepTrace) -> list[Case]:
    details = step.details or {}
    classname, name = mangle_node_id(step.name)
    case = Case(classname, name, time=step.duration_s or 0.0, out=step.output)
    if details.get("kind") == "collection":
        tag = ERROR if step.status == "error" else SKIPPED
        what = "collection failure" if tag == ERROR else "collection skipped"
        case.results.append(Result(tag, what, step.error))
        return [case]
    phases: dict[str, str] = details.get("phases") or {}
    if not phases:  # cut short (timeout, cancel, crash): no verdict from pytest
        verdict = GENERIC_RESULT.get(step.status)
        if verdict:
            case.results.append(Result(verdict, _first_line(step.error) or step.status, step.error))
        return [case]
    texts = _phase_texts(step.error or "", phases)
    setup, call, teardown = phases.get("setup"), phases.get("call"), phases.get("teardown")
    if setup == "error":
        reason = _crash(texts.get("setup"), details.get("message"), "setup")
        case.results.append(Result(ERROR, f'failed on setup with "{reason}"', texts.get("setup")))
    elif setup == "skipped":
        case.results.append(_skip(step.error))
    if call == "failed":
        message = _crash(texts.get("call"), details.get("message"), "call")
        case.results.append(Result(FAILURE, message, texts.get("call")))
    elif call == "skipped":
        case.results.append(_skip(step.error))
    elif call == "xfailed":
        reason = str(details.get("xfail_reason") or "").removeprefix("reason: ")
        case.results.append(Result(SKIPPED, reason, type="pytest.xfail"))
    if teardown != "error":
        return [case]
    reason = _crash(texts.get("teardown"), None, "teardown")
    error = Result(ERROR, f'failed on teardown with "{reason}"', texts.get("teardown"))
    if call == "failed":
        # pytest closes the failed testcase and opens a second one for the teardown error.
        return [case, Case(classname, name, results=[error])]
    case.results.append(error)
    return [case]


def _phase_texts(error: str, phases: dict[str, str]) -> dict[str, str]:
    """The failure text of each failing phase (the plugin joins several under "----- when -----")."""
    parts = _SECTION.split(error)
    if len(parts) > 1:
        return {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    failing = [when for when, category in phases.items() if category in ("error", "failed")]
    return {failing[0]: error} if failing else {}


def _crash(text: str | None, message: str | None, when: str) -> str:
    """pytest's crash message of phase ``when``: the plugin's (it kept the first failing phase's,
    prefixed by the phase unless it was the call), else the first ``E`` line of the phase's text."""
    if message:
        tagged = re.match(r"(setup|teardown): (.*)", message, re.DOTALL)
        message_when, body = (tagged.group(1), tagged.group(2)) if tagged else ("call", message)
        if message_when == when:
            return body
    for line in (text or "").splitlines():
        if line.startswith("E "):
            return line[1:].strip()
    return _first_line(text) or "unknown error"


def _skip(error: str | None) -> Result:
    reason = (error or "").removeprefix("Skipped: ")
    return Result(SKIPPED, reason, reason, type="pytest.skip")


# -- BDD -------------------------------------------------------------------------------------------


def _scenario_cases(steps: Sequence[StepTrace]) -> list[Case]:
    groups: list[list[StepTrace]] = []
    for step in steps:
        if groups and _scenario_key(groups[-1][0]) == _scenario_key(step):
            groups[-1].append(step)
        else:
            groups.append([step])
    return [_scenario_case(group) for group in groups]


def _scenario_key(step: StepTrace) -> tuple[Any, ...]:
    d = step.details or {}
    return d.get("feature"), d.get("rule"), d.get("scenario"), d.get("scenario_location")


def _scenario_case(group: list[StepTrace]) -> Case:
    details = group[0].details or {}
    # behave names the class after the feature file, relative to the features directory.
    location = str(details.get("scenario_location") or details.get("location") or "")
    path = re.sub(r"^(.*/)?features/", "", location.rsplit(":", 1)[0])
    filename = re.sub(r"\.feature$", "", path).replace("/", ".")
    feature = details.get("feature") or filename
    classname = ".".join(part for part in (filename, feature) if part)
    case = Case(classname, str(details.get("scenario") or group[0].name))
    case.time = sum(step.duration_s or 0.0 for step in group)
    lines = [_step_line(step) for step in group]
    outputs = [step.output for step in group if step.output]
    case.out = "\n".join(lines + (["", "Captured output:", *outputs] if outputs else []))
    erred = next((s for s in group if s.status in ("error", "undefined", "pending", "timeout")), None)
    culprit = erred or next((s for s in group if s.status == "failed"), None)
    if culprit is not None:
        tag = ERROR if erred is not None else FAILURE
        text = f"Failing step: {_step_line(culprit)}\n"
        if (culprit.details or {}).get("location"):
            text += f"Location: {culprit.details['location']}\n"
        text += culprit.error or ""
        message = _first_line(culprit.error) or f"step {culprit.status}"
        case.results.append(Result(tag, message, text, type=culprit.status))
    elif all(step.status in ("skipped", "not_run", "cancelled") for step in group):
        case.results.append(Result(SKIPPED, "scenario not run"))
    return case


def _step_line(step: StepTrace) -> str:
    keyword = f"{step.keyword} " if step.keyword else ""
    duration = f" in {step.duration_s:.3f}s" if step.duration_s is not None else ""
    return f"{keyword}{step.name} ... {step.status}{duration}"


# -- manual and generic ----------------------------------------------------------------------------


def _manual_case(title: str, steps: Sequence[StepTrace]) -> Case:
    case = Case("manual", title, time=sum(step.duration_s or 0.0 for step in steps))
    lines = []
    for step in steps:
        d = step.details or {}
        lines.append(f"{step.seq}. {step.name} ... {step.status}")
        for label, key in (("expected", "expected"), ("actual", "actual"), ("comment", "comment")):
            if d.get(key):
                lines.append(f"   {label}: {d[key]}")
        if d.get("recorded_by"):
            lines.append(f"   recorded by: {d['recorded_by']}")
    case.out = "\n".join(lines)
    for status, tag in (("failed", FAILURE), ("blocked", ERROR)):
        bad = next((s for s in steps if s.status == status), None)
        if bad is not None:
            why = f": {bad.error}" if bad.error else ""
            case.results.append(Result(tag, f"step {bad.seq} ({bad.name}) {status}{why}", case.out))
            return case
    waiting = next((s for s in steps if s.status == "not_run"), None)
    if waiting is not None:
        case.results.append(Result(SKIPPED, f"not finished: step {waiting.seq} has no result yet"))
    elif all(step.status == "skipped" for step in steps):
        case.results.append(Result(SKIPPED, "every step was skipped"))
    return case


def _generic_case(title: str, step: StepTrace) -> Case:
    case = Case(title, step.name, time=step.duration_s or 0.0, out=step.output)
    tag = GENERIC_RESULT.get(step.status)
    if tag:
        case.results.append(Result(tag, _first_line(step.error) or step.status, step.error))
    return case


# -- text ------------------------------------------------------------------------------------------


def _not_run(execution: Execution) -> str:
    if execution.status in ("CANCELLED", "SKIPPED"):
        return f"not run: {execution.status}" + (f" ({execution.error})" if execution.error else "")
    return f"not finished: {execution.status}"


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_CAP else message[:MESSAGE_CAP] + "..."


def _clean(text: str) -> str:
    """Text XML 1.0 can hold: each illegal character (NUL, most controls) becomes ``#xNN``."""
    return _ILLEGAL.sub(lambda m: f"#x{ord(m.group()):02X}", text)


def _timestamp(at: datetime | None) -> str:
    # The JUnit schema's timestamp carries no zone: UTC, to the second.
    if at is None:
        return ""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
