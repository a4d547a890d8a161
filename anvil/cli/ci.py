"""What `anvil submit … --wait` adds for a CI system it runs in.

GitHub Actions (GITHUB_ACTIONS=true): an ``::error file=…,line=…::`` workflow command per failed
test (pytest's node id and line, so the failure shows on the pull request's diff), and a Markdown
job summary appended to the file $GITHUB_STEP_SUMMARY names. GitLab CI (GITLAB_CI=true): the failed
tests in a collapsible log section, and where the JUnit report is (GitLab's test reports read it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from anvil.cli.gates import gate_summary, rule_names, rule_text
from anvil.cli.http import Api
from anvil.cli.lookup import pages

# Failing executions whose tests are read, and annotations written (GitHub shows 10 per step anyway).
MAX_FAILING_EXECUTIONS = 50
MAX_ANNOTATIONS = 50
MAX_SUMMARY_TESTS = 100
NOT_PASSED = "FAILED,ERROR,TIMEOUT,ABORTED,CANCELLED"
Echo = Callable[[str], None]


def raw_echo(line: str) -> None:
    """Print a line as it is: click strips escape sequences when stdout is not a terminal (a CI
    log never is), and GitLab's section markers are escape sequences."""
    typer.echo(line, color=True)


def ci_system(env: Mapping[str, str]) -> str | None:
    """ "github" or "gitlab" when run by one (each sets its variable to "true"), else None."""
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return None


@dataclass(frozen=True)
class FailedTest:
    name: str  # a pytest node id, a scenario, or a case's name
    status: str
    message: str
    execution_id: str
    file: str | None = None
    line: int | None = None


def failed_tests(api: Api, final: dict[str, Any]) -> list[FailedTest]:
    """The failed tests of a finished run: of each failing member of a suite (or the case itself),
    its failed or errored test steps with their location; a member without such steps, as itself."""
    if final.get("kind") == "suite":
        filters = {"correlation_id": final["correlation_id"], "status": NOT_PASSED}
        failing = [
            m
            for m in pages(api, "/api/v1/executions", filters, 100_000)
            if str(m.get("root_execution_id")) == str(final["id"]) and str(m["id"]) != str(final["id"])
        ][:MAX_FAILING_EXECUTIONS]
    else:
        failing = [final] if final["status"] != "PASSED" else []
    found: list[FailedTest] = []
    for execution in failing:
        tests = _failed_steps(api, execution) if execution.get("kind") in ("pytest", "bdd") else []
        if not tests:
            error = str(execution.get("error") or execution["status"]).splitlines()[0]
            name = str(execution.get("test_case_name"))
            tests = [FailedTest(name, execution["status"], error, str(execution["id"]))]
        found += tests
    return found


def _failed_steps(api: Api, execution: dict[str, Any]) -> list[FailedTest]:
    steps = api.call("GET", f"/api/v1/executions/{execution['id']}/steps")
    found = []
    for step in steps:
        details = step.get("details") or {}
        if step["status"] not in ("failed", "error") or details.get("kind") == "collection":
            continue
        file, line = _location(details.get("location"))
        error = [line for line in str(step.get("error") or "").splitlines() if line.strip()]
        message = str(details.get("message") or (error[-1] if error else step["status"]))
        found.append(FailedTest(step["name"], step["status"], message, str(step["execution_id"]), file, line))
    return found


def _location(location: Any) -> tuple[str | None, int | None]:
    """pytest's [file, 0-based line, name] or behave's "file:line" as (file, 1-based line)."""
    if isinstance(location, list) and location and isinstance(location[0], str):
        lineno = location[1] + 1 if len(location) > 1 and isinstance(location[1], int) else None
        return location[0], lineno
    if isinstance(location, str) and ":" in location:
        file, _, line = location.rpartition(":")
        if file == "feature_text":  # Gherkin given inline in the spec: no file in the repository
            return None, None
        return file, int(line) if line.isdigit() else None
    return None, None


# ---- GitHub Actions -------------------------------------------------------------------------------


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(tests: list[FailedTest], verdict: dict[str, Any] | None) -> list[str]:
    """Workflow commands: one ``::error`` per failed test (with its file and line when known), and
    one for a failed gate."""
    lines = []
    for test in tests[:MAX_ANNOTATIONS]:
        where = [f"file={_property(test.file)}"] if test.file else []
        where += [f"line={test.line}"] if test.file and test.line else []
        where.append(f"title={_property(f'{test.name} {test.status}')}")
        lines.append(f"::error {','.join(where)}::{_data(test.message)}")
    if len(tests) > MAX_ANNOTATIONS:
        lines.append(f"::warning::{len(tests) - MAX_ANNOTATIONS} more failed tests are in the job summary")
    if verdict and verdict["status"] == "failed":
        lines.append(f"::error title=Anvil quality gate failed::{_data(gate_summary(verdict) or '')}")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def github_summary(
    final: dict[str, Any], verdict: dict[str, Any] | None, tests: list[FailedTest], *, ui_url: str
) -> str:
    """The job summary in Markdown: what ran, its result and counts, the gate, the failed tests."""
    link = f"{ui_url}/ui/executions/{final['id']}"
    name = final.get("test_case_name") or final["id"]
    mark = "✅" if final["status"] == "PASSED" else "❌"
    duration = f" in {final['duration_s']:.1f}s" if final.get("duration_s") is not None else ""
    out = [
        f"## {mark} Anvil {'suite' if final.get('kind') == 'suite' else 'case'} `{_cell(str(name))}`: "
        f"{final['status']}{duration}",
        "",
        f"Execution [{final['id']}]({link})"
        + (f" · branch `{_cell(final['branch'])}`" if final.get("branch") else "")
        + (f" · revision `{_cell(final['revision'])}`" if final.get("revision") else ""),
        "",
        "| | |",
        "| --- | --- |",
    ]
    progress = final.get("progress") or {}
    if final.get("kind") == "suite" and progress:
        members = ", ".join(f"{n} {status}" for status, n in (progress.get("by_status") or {}).items())
        out.append(f"| members | {progress.get('total')}: {members} |")
    measured = (verdict or {}).get("measured") or {}
    counts = measured or final.get("summary") or {}
    tests_line = ", ".join(
        f"{counts[key]} {label}"
        for key, label in (("passed", "passed"), ("failed", "failed"), ("errors", "errors"),
                           ("error", "errors"), ("skipped", "skipped"), ("quarantined", "quarantined"))
        if isinstance(counts.get(key), int) and counts[key]
    )  # fmt: skip
    if tests_line:
        out.append(f"| tests | {tests_line} |")
    if measured.get("pass_rate") is not None:
        out.append(f"| pass rate | {measured['pass_rate']:g}% |")
    if verdict:
        gate = "✅ passed" if verdict["status"] == "passed" else "❌ failed"
        out.append(f"| quality gate | {gate} ({rule_names(verdict)}) |")
    for rule in (verdict or {}).get("failed_rules") or []:
        out.append(f"| ↳ {rule['rule']} | {_cell(rule_text(rule))}: {_cell(rule['message'])} |")
    if tests:
        out += ["", f"### Failed tests ({len(tests)})", "", "| test | status | location | execution |",
                "| --- | --- | --- | --- |"]  # fmt: skip
        for test in tests[:MAX_SUMMARY_TESTS]:
            where = f"{test.file}:{test.line}" if test.file and test.line else (test.file or "")
            short = test.execution_id[:8]
            out.append(
                f"| `{_cell(test.name)}` | {test.status} | {_cell(where)} | "
                f"[{short}]({ui_url}/ui/executions/{test.execution_id}) |"
            )
        if len(tests) > MAX_SUMMARY_TESTS:
            out.append(f"\n… and {len(tests) - MAX_SUMMARY_TESTS} more: see [the execution]({link}).")
    return "\n".join(out) + "\n"


# ---- GitLab CI ------------------------------------------------------------------------------------


def gitlab_section(name: str, header: str, lines: list[str], *, now: float | None = None) -> list[str]:
    """A collapsed section of the job log (GitLab's section_start/section_end markers)."""
    at = int(now if now is not None else time.time())
    return [
        f"\x1b[0Ksection_start:{at}:{name}[collapsed=true]\r\x1b[0K{header}",
        *lines,
        f"\x1b[0Ksection_end:{at}:{name}\r\x1b[0K",
    ]


def gitlab_output(verdict: dict[str, Any] | None, tests: list[FailedTest], junit: Path | None) -> list[str]:
    out: list[str] = []
    if tests:
        lines = [
            f"  {test.status:6} {test.name}"
            + (f"  ({test.file}:{test.line})" if test.file and test.line else "")
            + f"\n         {test.message}"
            for test in tests[:MAX_SUMMARY_TESTS]
        ]
        out += gitlab_section("anvil_failed_tests", f"Anvil: {len(tests)} failed tests", lines)
    if verdict:
        out.append(f"Anvil quality gate {gate_summary(verdict)}")
    if junit is not None:
        out.append(f"JUnit report for GitLab: {junit} (list it under artifacts:reports:junit, when: always)")
    else:
        out.append(
            "hint: add --junit anvil-junit.xml and list that file under artifacts:reports:junit: "
            "GitLab then shows the failed tests in the merge request"
        )
    return out


def report(
    system: str,
    api: Api,
    final: dict[str, Any],
    verdict: dict[str, Any] | None,
    *,
    env: Mapping[str, str],
    junit: Path | None,
    echo: Echo,
) -> None:
    """Print (and for GitHub, append to the job summary) what ``system`` shows of a finished run."""
    tests = failed_tests(api, final)
    if system == "gitlab":
        for line in gitlab_output(verdict, tests, junit):
            echo(line)
        return
    for line in github_annotations(tests, verdict):
        echo(line)
    target = env.get("GITHUB_STEP_SUMMARY")
    if target:
        try:
            with open(target, "a", encoding="utf-8") as summary:
                summary.write(github_summary(final, verdict, tests, ui_url=api.base_url.rstrip("/")))
        except OSError as exc:
            echo(f"::warning::cannot append the job summary to {target}: {exc.strerror or exc}")
