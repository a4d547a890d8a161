"""JUnit XML reports of runs made elsewhere (a CI job), read into step records. Pure.

Read with junitparser, from one of the common dialects: pytest (xunit2, and xunit1/legacy with its
``file`` attribute), Maven surefire and Gradle, jest-junit, Go's go-junit-report; a ``<testsuites>``
root or a single ``<testsuite>``, suites nested in suites, namespaced tags. Each ``<testcase>``
becomes one step; its name is the test's identity from run to run (``identity_of``):

- a pytest node id when one can be derived: from ``classname`` + ``name`` and the ``file``
  attribute (``tests.test_x.TestY`` + ``test_a`` in ``tests/test_x.py`` ->
  ``tests/test_x.py::TestY::test_a``), or, for a case of kind ``pytest`` without ``file``
  (pytest's default xunit2), from ``classname`` alone: its trailing parts that start with a
  capital letter are classes, the rest is the module's path;
- otherwise ``classname::name`` (``com.example.AppTest::testApp``), or ``name`` alone when the
  classname is empty or repeats it (jest-junit writes the full title in both).

Status: ``<failure>`` failed, ``<error>`` error, ``<skipped>`` skipped (pytest's xfail: xfailed),
none passed; a test named twice (pytest writes a call failure and a teardown error as two
testcases) is one step with the worse result. The execution is ERROR when pytest could not
collect a module, FAILED when a test failed or errored, else PASSED.

A report is refused (InvalidInput naming what is wrong) when it is empty, is not well-formed XML
(line and column given), declares a DTD (no JUnit writer does; refusing it refuses every entity
expansion attack), is not JUnit, or holds no testcase or more than ``MAX_TESTCASES``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import junitparser
from junitparser import Attr

from anvil.domain.states import Status
from anvil.domain.steps import StepRecord, summarize
from anvil.errors import InvalidInput

MAX_TESTCASES = 50_000
FIELD = "file"
# The worse of two results of one test wins (a call failure and a teardown error: error).
RANK = {"skipped": 0, "xfailed": 0, "passed": 1, "failed": 2, "error": 3}
PYTHON_SUFFIX = ".py"


class _Case(junitparser.TestCase):
    # Written by pytest's xunit1 (file relative to the rootdir), PHPUnit, jest-junit on request.
    file = Attr()
    line = Attr()


class _Suite(junitparser.TestSuite):
    testcase = _Case


class _Report(junitparser.JUnitXml):
    testsuite = _Suite


class _NoDoctype(ET.TreeBuilder):
    """Builds the tree, and stops the parser at a DTD: entities (billion laughs) need one."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _DoctypeFound


class _DoctypeFound(Exception):
    pass


@dataclass
class ImportedReport:
    """What a report says: the steps (one per test) and the execution's result and times."""

    steps: list[StepRecord]
    status: Status
    error: str | None
    summary: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    suites: list[str] = field(default_factory=list)


def parse_xml(data: bytes) -> ET.Element:
    """The report's root element; InvalidInput for an empty, malformed or DTD-bearing document."""
    if not data.strip():
        raise InvalidInput("the report is empty", field=FIELD)
    parser = ET.XMLParser(target=_NoDoctype())
    try:
        parser.feed(data)
        root = parser.close()
    except _DoctypeFound:
        raise InvalidInput(
            "the report declares a DTD (<!DOCTYPE ...>); JUnit reports have none, and DTDs "
            "(entity declarations) are refused",
            field=FIELD,
        ) from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":", 1)[0]
        raise InvalidInput(
            f"the report is not well-formed XML: {reason} at line {line}, column {column + 1}",
            field=FIELD,
            line=line,
            column=column + 1,
        ) from None
    for element in root.iter():  # {namespace}testsuite -> testsuite
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    return root


def read_report(data: bytes, *, pytest_ids: bool, output_cap: int, now: datetime) -> ImportedReport:
    """The steps and result of a JUnit report. ``pytest_ids``: the case is of kind pytest, so a
    classname without ``file`` is read as pytest's dotted module path. Times: the suites'
    ``timestamp`` and ``time`` when given (a timestamp without a zone is UTC), else the report
    ended ``now`` and lasted the sum of its tests' times."""
    root = parse_xml(data)
    if root.tag not in ("testsuites", "testsuite"):
        raise InvalidInput(
            f"the root element is <{root.tag}>, not <testsuites> or <testsuite>: this is not a JUnit report",
            field=FIELD,
        )
    report = _Report.fromroot(cast(Any, root))  # typed as its own Element; it takes etree's
    merged: dict[str, StepRecord] = {}
    suites: list[str] = []
    spans: list[tuple[datetime, float]] = []
    count = 0
    for suite in report:
        suites.append(suite.name or "")
        start = _timestamp(suite.timestamp)
        if start is not None:
            spans.append((start, _seconds(suite, "time") or 0.0))
        for case in suite:
            count += 1
            if count > MAX_TESTCASES:
                raise InvalidInput(f"the report holds more than {MAX_TESTCASES} testcases", field=FIELD)
            step = _step(cast(_Case, case), suite.name, pytest_ids=pytest_ids, output_cap=output_cap)
            earlier = merged.get(step.name)
            merged[step.name] = _merge(earlier, step, output_cap) if earlier else step
    if not merged:
        raise InvalidInput("the report holds no <testcase>: there is nothing to import", field=FIELD)
    steps = list(merged.values())
    for seq, step in enumerate(steps, start=1):
        step.seq = seq
    started, finished = _span(spans, steps, now)
    status, error = _result(steps)
    summary = {**summarize([s.status for s in steps]), "imported": "junit"}
    return ImportedReport(steps, status, error, summary, started, finished, suites)


def identity_of(classname: str, name: str, file: str | None, *, pytest_ids: bool) -> tuple[str, str | None]:
    """(the test's key, its file) from a testcase's classname, name and file (see the module doc)."""
    classname, name = classname.strip(), name.strip()
    if file:
        file = file.strip().replace("\\", "/").removeprefix("./")
        module = file.rsplit(".", 1)[0].replace("/", ".") if "." in file.rsplit("/", 1)[-1] else None
        if module and (classname == module or classname.startswith(module + ".")):
            classes = classname[len(module) + 1 :].split(".") if classname != module else []
            return "::".join([file, *classes, name]), file
        middle = [classname] if classname and classname != name else []
        return "::".join([file, *middle, name]), file
    if pytest_ids:
        derived = _pytest_node(classname, name)
        if derived is not None:
            return derived
    if not classname or classname == name:
        return name, None
    return f"{classname}::{name}", None


def _pytest_node(classname: str, name: str) -> tuple[str, str] | None:
    if not classname:  # pytest's collection error: the module's dotted path as the name
        if not name or " " in name:
            return None
        file = name.replace(".", "/") + PYTHON_SUFFIX
        return file, file
    parts = classname.split(".")
    split = len(parts)
    while split > 0 and parts[split - 1][:1].isupper():
        split -= 1
    if split == 0:
        return None
    file = "/".join(parts[:split]) + PYTHON_SUFFIX
    return "::".join([file, *parts[split:], name]), file


def _step(case: _Case, suite: str | None, *, pytest_ids: bool, output_cap: int) -> StepRecord:
    classname, name = case.classname or "", case.name or ""
    if not name.strip() and not classname.strip():
        raise InvalidInput("a <testcase> has neither a name nor a classname", field=FIELD)
    key, file = identity_of(classname, name or classname, case.file, pytest_ids=pytest_ids)
    status, message, kind, text = "passed", None, None, None
    for result in case.result:
        found = _status_of(result)
        if RANK[found] >= RANK[status] or status == "passed":
            status, message, kind, text = found, result.message, result.type, result.text
    details: dict[str, Any] = {"imported": "junit", "classname": classname}
    if suite:
        details["suite"] = suite
    if file:
        details["file"] = file
    if case.line and case.line.isdigit():
        details["line"] = int(case.line)
    if message:
        details["message"] = message[:1000]
    if kind:
        details["type"] = kind[:200]
    if status == "error" and message == "collection failure" and not classname:
        details["kind"] = "collection"  # pytest could not import the module (anvil/domain/results.py)
    error = _error_text(message, text) if status in ("failed", "error") else None
    if status in ("skipped", "xfailed") and (message or text):
        error = (message or text or "").strip() or None
    output = _output(case.system_out, case.system_err)
    error_capped, _ = capped(error, output_cap) if error else (None, False)
    output_capped, truncated = capped(output, output_cap) if output else (None, False)
    return StepRecord(
        seq=0,
        name=key,
        status=status,
        duration_s=_seconds(case, "time"),
        output=output_capped,
        output_truncated=truncated,
        error=error_capped,
        details=details,
    )


def _status_of(result: Any) -> str:
    if isinstance(result, junitparser.Error):
        return "error"
    if isinstance(result, junitparser.Failure):
        return "failed"
    return "xfailed" if (result.type or "") == "pytest.xfail" else "skipped"


def _error_text(message: str | None, text: str | None) -> str | None:
    message, text = (message or "").strip(), (text or "").strip()
    if message and message not in text:
        return f"{message}\n{text}".strip()
    return text or message or None


def _output(out: str | None, err: str | None) -> str | None:
    out, err = (out or "").strip("\n"), (err or "").strip("\n")
    if out and err:
        return f"{out}\n--- stderr ---\n{err}"
    return out or err or None


def capped(text: str, cap: int) -> tuple[str, bool]:
    """``text`` cut to about ``cap`` characters, its head and its tail kept (as the runners do)."""
    if len(text) <= cap:
        return text, False
    half = cap // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n... [{dropped} characters truncated] ...\n{text[-half:]}", True


def _merge(first: StepRecord, second: StepRecord, cap: int) -> StepRecord:
    """One test written twice (pytest: a failing call, then a failing teardown): the worse result."""
    worse = second if RANK[second.status] > RANK[first.status] else first
    errors = "\n\n".join(e for e in (first.error, second.error) if e) or None
    outputs = "\n".join(o for o in (first.output, second.output) if o) or None
    error, _ = capped(errors, cap) if errors else (None, False)
    output, truncated = capped(outputs, cap) if outputs else (None, False)
    durations = [d for d in (first.duration_s, second.duration_s) if d is not None]
    return StepRecord(
        seq=0,
        name=first.name,
        status=worse.status,
        duration_s=round(sum(durations), 6) if durations else None,
        output=output,
        output_truncated=truncated or first.output_truncated or second.output_truncated,
        error=error,
        details={**first.details, **worse.details},
    )


def _result(steps: list[StepRecord]) -> tuple[Status, str | None]:
    counts = summarize([s.status for s in steps])
    failing = counts.get("failed", 0) + counts.get("error", 0)
    collection = [s.name for s in steps if s.details.get("kind") == "collection"]
    if collection:
        return (
            Status.ERROR,
            f"junit: {len(collection)} module(s) could not be collected: {', '.join(collection[:5])}",
        )
    if failing:
        parts = [f"{counts[k]} {k}" for k in ("failed", "error") if counts.get(k)]
        return Status.FAILED, f"junit: {', '.join(parts)} of {len(steps)} tests"
    return Status.PASSED, None


def _span(
    spans: list[tuple[datetime, float]], steps: list[StepRecord], now: datetime
) -> tuple[datetime, datetime]:
    """When the run started and finished: the suites' own timestamps and times when they have them."""
    if spans:
        started = min(start for start, _ in spans)
        finished = max(start + timedelta(seconds=max(seconds, 0.0)) for start, seconds in spans)
        ahead = finished - now  # the CI machine's clock ran ahead: end the run now
        return (started - ahead, now) if ahead > timedelta(0) else (started, finished)
    total = sum(s.duration_s or 0.0 for s in steps)
    return now - timedelta(seconds=total), now


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None  # not a time a report can be placed at; the import time serves
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds(element: Any, attribute: str) -> float | None:
    """A ``time`` attribute in seconds; None when missing or not a number (some writers leave junk)."""
    try:
        value = getattr(element, attribute)
    except (ValueError, TypeError, AttributeError):
        return None
    if value is None or value != value or value < 0 or value == float("inf"):
        return None
    return round(float(value), 6)
