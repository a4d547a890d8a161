"""anvil/domain/junit_import.py: JUnit dialects read into steps, test identities, refused reports;
and what anvil/domain/results.py makes of an imported execution's steps."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from anvil.domain import results
from anvil.domain.junit_import import MAX_TESTCASES, identity_of, read_report
from anvil.domain.results import IMPORTED, StepView, outcomes_of
from anvil.domain.states import Status
from anvil.errors import InvalidInput

NOW = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
CAP = 4096

PYTEST_PROJECT = {
    "tests/__init__.py": "",
    "tests/sub/__init__.py": "",
    "tests/sub/test_x.py": """
import sys
import pytest

class TestY:
    def test_ok(self):
        print("hello from test_ok")

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        assert n == 1

def test_skip():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown boom")

def test_td(broken_teardown):
    assert 0
""",
}


def run_pytest(tmp_path: Path, *options: str, files: dict[str, str] = PYTEST_PROJECT) -> bytes:
    """A real pytest JUnit report of a tiny project."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *options],
        cwd=tmp_path,
        # The installed plugins (schemathesis, xdist, ...) cost seconds of start-up each run.
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return report.read_bytes()


def read(
    data: bytes | str, *, pytest_ids: bool = False, cap: int = CAP
) -> tuple[list[tuple[str, str]], Status]:
    report = read_report(
        data.encode() if isinstance(data, str) else data, pytest_ids=pytest_ids, output_cap=cap, now=NOW
    )
    return [(step.name, step.status) for step in report.steps], report.status


PYTEST_STEPS = [
    ("tests/sub/test_x.py::TestY::test_ok", "passed"),
    ("tests/sub/test_x.py::TestY::test_param[1]", "passed"),
    ("tests/sub/test_x.py::TestY::test_param[2]", "failed"),
    ("tests/sub/test_x.py::test_skip", "skipped"),
    ("tests/sub/test_x.py::test_xfail", "xfailed"),
    # A failing call and a failing teardown: pytest writes two testcases; one test, the worse result.
    ("tests/sub/test_x.py::test_td", "error"),
]


@pytest.mark.parametrize("family", ["xunit2", "xunit1", "legacy"])
def test_a_real_pytest_report_gives_its_node_ids_and_statuses(tmp_path: Path, family: str) -> None:
    data = run_pytest(tmp_path, "-o", f"junit_family={family}", "-o", "junit_logging=system-out")
    steps, status = read(data, pytest_ids=True)
    assert steps == PYTEST_STEPS
    assert status is Status.FAILED


def test_a_pytest_report_keeps_errors_output_durations_and_times(tmp_path: Path) -> None:
    data = run_pytest(tmp_path, "-o", "junit_logging=system-out")
    report = read_report(data, pytest_ids=True, output_cap=CAP, now=NOW)
    by_name = {step.name: step for step in report.steps}
    failed = by_name["tests/sub/test_x.py::TestY::test_param[2]"]
    assert failed.error is not None and "assert 2 == 1" in failed.error
    assert failed.details["message"] == "assert 2 == 1"
    assert failed.duration_s is not None and failed.duration_s >= 0
    assert "hello from test_ok" in (by_name["tests/sub/test_x.py::TestY::test_ok"].output or "")
    td = by_name["tests/sub/test_x.py::test_td"]
    assert td.error is not None and "assert 0" in td.error and "teardown boom" in td.error
    assert by_name["tests/sub/test_x.py::test_skip"].error == "not here"
    assert [step.seq for step in report.steps] == list(range(1, 7))
    assert report.error == "junit: 1 failed, 1 error of 6 tests"
    assert report.summary == {
        "total": 6, "error": 1, "failed": 1, "passed": 2, "skipped": 1, "xfailed": 1, "imported": "junit"
    }  # fmt: skip
    # pytest's own timestamp: the run happened moments ago, not at NOW.
    assert report.started_at <= report.finished_at < datetime.now(UTC) + timedelta(seconds=1)


def test_a_passing_pytest_run_is_passed_and_a_collection_error_is_error(tmp_path: Path) -> None:
    ok = run_pytest(tmp_path / "ok", files={"test_a.py": "def test_a():\n    pass\n"})
    assert read(ok, pytest_ids=True) == ([("test_a.py::test_a", "passed")], Status.PASSED)
    broken = run_pytest(tmp_path / "broken", files={"tests/test_bad.py": "import nonexistent_module_x\n"})
    report = read_report(broken, pytest_ids=True, output_cap=CAP, now=NOW)
    assert [(s.name, s.status, s.details.get("kind")) for s in report.steps] == [
        ("tests/test_bad.py", "error", "collection")
    ]
    assert report.status is Status.ERROR


SUREFIRE = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="com.example.AppTest" time="0.052"
           tests="3" errors="1" skipped="1" failures="1">
  <properties><property name="java.version" value="21"/></properties>
  <testcase name="testAdds" classname="com.example.AppTest" time="0.011"/>
  <testcase name="testDivides" classname="com.example.AppTest" time="0.020">
    <failure message="expected: &lt;2&gt; but was: &lt;3&gt;" type="org.opentest4j.AssertionFailedError">
org.opentest4j.AssertionFailedError: expected: &lt;2&gt; but was: &lt;3&gt;
  at com.example.AppTest.testDivides(AppTest.java:21)</failure>
    <system-out><![CDATA[dividing 6 by 3
]]></system-out>
  </testcase>
  <testcase name="testConnects" classname="com.example.AppTest" time="0.001">
    <error message="Connection refused" type="java.net.ConnectException">java.net.ConnectException</error>
  </testcase>
  <testcase name="testLater" classname="com.example.AppTest" time="0">
    <skipped message="@Disabled"/>
  </testcase>
  <testcase name="testFlaky" classname="com.example.AppTest" time="0.003">
    <flakyFailure message="first try failed" type="java.lang.AssertionError">
      <stackTrace>at x</stackTrace>
    </flakyFailure>
  </testcase>
</testsuite>
"""

JEST = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="3" failures="1" errors="0" time="1.204">
  <testsuite name="sum" errors="0" failures="1" skipped="1" timestamp="2030-05-06T06:00:00" time="0.5"
             tests="3">
    <testcase classname="sum adds 1 + 2" name="sum adds 1 + 2" time="0.002"></testcase>
    <testcase classname="sum handles negatives" name="sum handles negatives" time="0.003">
      <failure>Error: expect(received).toBe(expected)

Expected: -3
Received: 3</failure>
    </testcase>
    <testcase classname="sum later" name="sum later" time="0"><skipped/></testcase>
  </testsuite>
</testsuites>
"""

GO = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="2" failures="1">
  <testsuite name="example.com/calc" tests="2" failures="1" errors="0" id="0" hostname="ci" time="0.011"
             timestamp="2030-05-06T06:30:00Z">
    <properties><property name="go.version" value="go1.22.1"></property></properties>
    <testcase name="TestAdd" classname="example.com/calc" time="0.001"></testcase>
    <testcase name="TestSub/negative" classname="example.com/calc" time="0.010">
      <failure message="Failed" type="">calc_test.go:21: got 1, want -1</failure>
    </testcase>
  </testsuite>
</testsuites>
"""

GRADLE = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.FooTest" tests="1" skipped="0" failures="0" errors="0"
           timestamp="2030-05-06T05:00:00" hostname="ci" time="0.25">
  <properties/>
  <testcase name="works()" classname="com.example.FooTest" time="0.25"/>
  <system-out><![CDATA[]]></system-out>
  <system-err><![CDATA[]]></system-err>
</testsuite>
"""


@pytest.mark.parametrize(
    ("xml", "steps", "status"),
    [
        (
            SUREFIRE,
            [
                ("com.example.AppTest::testAdds", "passed"),
                ("com.example.AppTest::testDivides", "failed"),
                ("com.example.AppTest::testConnects", "error"),
                ("com.example.AppTest::testLater", "skipped"),
                ("com.example.AppTest::testFlaky", "passed"),  # passed on surefire's rerun
            ],
            Status.FAILED,
        ),
        (
            JEST,
            [("sum adds 1 + 2", "passed"), ("sum handles negatives", "failed"), ("sum later", "skipped")],
            Status.FAILED,
        ),
        (
            GO,
            [("example.com/calc::TestAdd", "passed"), ("example.com/calc::TestSub/negative", "failed")],
            Status.FAILED,
        ),
        (GRADLE, [("com.example.FooTest::works()", "passed")], Status.PASSED),
    ],
    ids=["surefire", "jest", "go", "gradle"],
)
def test_other_dialects_give_classname_and_name(
    xml: str, steps: list[tuple[str, str]], status: Status
) -> None:
    assert read(xml) == (steps, status)


def test_a_surefire_failure_keeps_message_type_text_and_output() -> None:
    report = read_report(SUREFIRE.encode(), pytest_ids=False, output_cap=CAP, now=NOW)
    failed = report.steps[1]
    assert failed.error is not None and failed.error.startswith(
        "org.opentest4j.AssertionFailedError: expected"
    )
    assert failed.details["type"] == "org.opentest4j.AssertionFailedError"
    assert failed.details["suite"] == "com.example.AppTest"
    assert failed.output == "dividing 6 by 3"
    assert report.steps[2].error == "Connection refused\njava.net.ConnectException"
    # No timestamp in the report: it ended at the import and lasted its tests' time.
    assert report.finished_at == NOW
    assert report.started_at == NOW - timedelta(seconds=0.035)


def test_times_come_from_the_suites_timestamps() -> None:
    jest = read_report(JEST.encode(), pytest_ids=False, output_cap=CAP, now=NOW)
    assert jest.started_at == datetime(2030, 5, 6, 6, 0, tzinfo=UTC)  # no zone: UTC
    assert jest.finished_at == datetime(2030, 5, 6, 6, 0, 0, 500000, tzinfo=UTC)
    go = read_report(GO.encode(), pytest_ids=False, output_cap=CAP, now=NOW)
    assert go.started_at == datetime(2030, 5, 6, 6, 30, tzinfo=UTC)
    # A CI clock ahead of ours: the run is moved back to end now.
    ahead = read_report(
        GO.encode(), pytest_ids=False, output_cap=CAP, now=datetime(2030, 5, 6, 6, 30, tzinfo=UTC)
    )
    assert ahead.finished_at == datetime(2030, 5, 6, 6, 30, tzinfo=UTC)
    assert ahead.finished_at - ahead.started_at == timedelta(seconds=0.011)


def test_output_and_errors_are_capped_head_and_tail() -> None:
    text = "a" * 3000 + "MIDDLE" + "z" * 3000
    xml = (
        f'<testsuite><testcase classname="c" name="t"><failure message="m">{text}</failure>'
        f"<system-out>{text}</system-out></testcase></testsuite>"
    )
    (step,) = read_report(xml.encode(), pytest_ids=False, output_cap=1024, now=NOW).steps
    assert step.output is not None and step.error is not None
    assert (
        step.output.startswith("a" * 512) and step.output.endswith("z" * 512) and "MIDDLE" not in step.output
    )
    assert step.output_truncated and "characters truncated" in step.error


def test_nested_suites_and_namespaced_tags_are_read() -> None:
    xml = """<ns:testsuites xmlns:ns="urn:x"><ns:testsuite name="outer"><ns:testsuite name="inner">
      <ns:testcase classname="k" name="a"/></ns:testsuite>
      <ns:testcase classname="k" name="b"><ns:failure/></ns:testcase>
      </ns:testsuite></ns:testsuites>"""
    assert read(xml) == ([("k::b", "failed"), ("k::a", "passed")], Status.FAILED)


@pytest.mark.parametrize(
    ("classname", "name", "file", "pytest_ids", "expected"),
    [
        # pytest xunit1: the file attribute says where the module ends.
        (
            "tests.test_x.TestY",
            "test_a",
            "tests/test_x.py",
            False,
            ("tests/test_x.py::TestY::test_a", "tests/test_x.py"),
        ),
        ("test_x", "test_a[1.5-x]", "test_x.py", False, ("test_x.py::test_a[1.5-x]", "test_x.py")),
        (
            "tests.a.test_b.TestO.TestI",
            "t",
            "tests/a/test_b.py",
            True,
            ("tests/a/test_b.py::TestO::TestI::t", "tests/a/test_b.py"),
        ),
        # pytest xunit2 in a pytest case: capitalised trailing parts are classes.
        (
            "tests.sub.test_x.TestY",
            "test_ok",
            None,
            True,
            ("tests/sub/test_x.py::TestY::test_ok", "tests/sub/test_x.py"),
        ),
        ("test_x", "test_a", None, True, ("test_x.py::test_a", "test_x.py")),
        ("", "tests.test_bad", None, True, ("tests/test_bad.py", "tests/test_bad.py")),  # collection error
        # ... but not in another kind of case.
        ("tests.sub.test_x.TestY", "test_ok", None, False, ("tests.sub.test_x.TestY::test_ok", None)),
        # A file that is not the classname's module (jest-junit's addFileAttribute, PHPUnit).
        ("sum adds", "sum adds", "src/sum.test.js", False, ("src/sum.test.js::sum adds", "src/sum.test.js")),
        (
            "FooTest",
            "testX",
            "/ci/tests/FooTest.php",
            False,
            ("/ci/tests/FooTest.php::FooTest::testX", "/ci/tests/FooTest.php"),
        ),
        # No module to find: classname::name, or the name alone.
        ("AppTest", "testApp", None, True, ("AppTest::testApp", None)),
        ("com.example.AppTest", "testApp", None, False, ("com.example.AppTest::testApp", None)),
        ("", "lonely", None, False, ("lonely", None)),
        ("same title", "same title", None, False, ("same title", None)),
    ],
)
def test_test_identity(
    classname: str, name: str, file: str | None, pytest_ids: bool, expected: tuple[str, str | None]
) -> None:
    assert identity_of(classname, name, file, pytest_ids=pytest_ids) == expected


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite><testcase classname="c" name="&lol3;"/></testsuite>"""
EXTERNAL = """<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<testsuite><testcase classname="c" name="&x;"/></testsuite>"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the report is empty"),
        (b"  \n ", "the report is empty"),
        (b"not xml at all", "not well-formed XML: syntax error at line 1, column 1"),
        (b"<testsuite>\n  <testcase name='a'>\n</testsuite>", "mismatched tag at line 3, column 3"),
        (b"<testsuite><testcase name='a'/>", "no element found at line 1, column 32"),
        (b"<html><body/></html>", "the root element is <html>, not <testsuites> or <testsuite>"),
        (b"<testsuites><testsuite name='empty'/></testsuites>", "holds no <testcase>"),
        (b"<testsuite><testcase/></testsuite>", "neither a name nor a classname"),
        (BOMB.encode(), "declares a DTD"),
        (EXTERNAL.encode(), "declares a DTD"),
    ],
)
def test_bad_reports_are_refused_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        read_report(data, pytest_ids=False, output_cap=CAP, now=NOW)
    assert message in refused.value.detail
    assert refused.value.field == "file"


def test_a_syntax_error_names_its_line_and_column() -> None:
    with pytest.raises(InvalidInput) as refused:
        read_report(
            b"<testsuite>\n<testcase name='a'>\n</testsuite>", pytest_ids=False, output_cap=CAP, now=NOW
        )
    assert refused.value.extra == {"line": 3, "column": 3}


def test_too_many_testcases_are_refused() -> None:
    cases = '<testcase classname="c" name="t"/>' * (MAX_TESTCASES + 1)
    with pytest.raises(InvalidInput, match=f"more than {MAX_TESTCASES} testcases"):
        read_report(f"<testsuite>{cases}</testsuite>".encode(), pytest_ids=False, output_cap=CAP, now=NOW)


def test_junk_times_are_ignored() -> None:
    xml = (
        '<testsuite time="soon" timestamp="yesterday">'
        '<testcase classname="c" name="t" time="1,5x"/></testsuite>'
    )
    report = read_report(xml.encode(), pytest_ids=False, output_cap=CAP, now=NOW)
    assert report.steps[0].duration_s is None and report.finished_at == NOW


# anvil/domain/results.py: an imported execution's steps are one test each, whatever the case's kind.
@pytest.mark.parametrize(
    ("kind", "steps", "expected"),
    [
        (
            "generic",
            [
                StepView("com.example.AppTest::testA", "passed", 0.5, {"classname": "com.example.AppTest"}),
                StepView("com.example.AppTest::testB", "failed", 0.1, {}),
                StepView("src/sum.test.js::adds", "skipped", 0.0, {"file": "src/sum.test.js"}),
                StepView(
                    "tests/test_bad.py", "error", 0.0, {"kind": "collection", "file": "tests/test_bad.py"}
                ),
                StepView("x::xfail", "xfailed", None, {}),
            ],
            [
                ("com.example.AppTest::testA", None, "passed", None, 0.5),
                ("com.example.AppTest::testB", None, "failed", None, 0.1),
                ("src/sum.test.js::adds", "src/sum.test.js", "skipped", None, 0.0),
                ("tests/test_bad.py", "tests/test_bad.py", "error", "collection", 0.0),
                ("x::xfail", None, "skipped", "xfailed", None),
            ],
        ),
        (
            "pytest",
            [StepView("tests/test_x.py::TestY::test_a", "failed", 0.2, {})],
            [("tests/test_x.py::TestY::test_a", "tests/test_x.py", "failed", None, 0.2)],
        ),
        (
            "manual",
            [StepView("Login::works", "passed", 1.0, {})],
            [("Login::works", None, "passed", None, 1.0)],
        ),
        (
            "bdd",
            [StepView("features.login::Logs in", "error", 1.0, {})],
            [("features.login::Logs in", None, "error", None, 1.0)],
        ),
    ],
)
def test_an_imported_executions_steps_are_its_tests(
    kind: str, steps: list[StepView], expected: list[tuple[str, str | None, str, str | None, float | None]]
) -> None:
    snapshot = {"name": "the case", "kind": kind, IMPORTED: True}
    outcomes = outcomes_of(snapshot, steps, execution_status="FAILED", execution_duration_s=9.0)
    assert [(o.key, o.file, o.status, o.detail, o.duration_s) for o in outcomes] == expected
    assert [results.test_key(snapshot, step) for step in steps] == [o.key for o in outcomes]
