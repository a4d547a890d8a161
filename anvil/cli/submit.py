"""`anvil submit case|cases|suite`: start executions over the API, and with --wait follow them live.

Exit codes: 0 done (or PASSED), 1 the execution did not pass, 2 usage or API error. `--wait`
follows the live event stream (anvil/cli/follow.py). With `--gate` the run's quality gate decides
instead: 0 passed, 1 failed. Run by GitHub Actions or GitLab CI, a finished run is also reported the
way that system shows it (anvil/cli/ci.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree

import typer
from rich.markup import escape

from anvil.cli.ci import ci_system, raw_echo
from anvil.cli.ci import report as ci_report
from anvil.cli.follow import follow_case, follow_suite
from anvil.cli.gates import gate_exit_code, gate_summary, verdict_of
from anvil.cli.git import source_from_git
from anvil.cli.http import Api, ApiError, exit_on_api_error, make_api
from anvil.cli.lookup import resolve, resolve_case
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, PriorityOption, Token
from anvil.cli.output import console
from anvil.domain.enums import Priority
from anvil.domain.states import Status

app = typer.Typer(help="Submit executions (over the API).", no_args_is_help=True)

Wait = Annotated[bool, typer.Option("--wait", help="follow it live; exit 0 if PASSED, 1 if not")]
Junit = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        dir_okay=False,
        show_default=False,
        help="when it has finished, write its JUnit XML report to this file (implies --wait)",
    ),
]
MAX_BATCH = 500  # api/execution_schemas.py: items per POST /executions/batch
RunId = Annotated[str | None, typer.Option(help="group executions of one run (e.g. a CI build)")]
Trigger = Annotated[str, typer.Option(help="trigger kind: api, ci or manual")]
IdempotencyKey = Annotated[
    str | None, typer.Option(help="repeat-safe submit: the same key returns the first execution")
]
Revision = Annotated[
    str | None, typer.Option(help="the commit tested (default: git rev-parse HEAD here)", show_default=False)
]
Branch = Annotated[
    str | None, typer.Option(help="the branch tested (default: the current git branch)", show_default=False)
]
Env = Annotated[
    str | None, typer.Option("--env", help="where it runs, a free label, e.g. staging", show_default=False)
]

GateOption = Annotated[
    bool,
    typer.Option(
        "--gate",
        help="exit by the run's quality gate (0 passed, 1 failed) instead of its status; implies --wait",
    ),
]
GateRulesOption = Annotated[
    str | None,
    typer.Option(
        "--gate-rules",
        help="quality gate for this run as a JSON object, replacing the suite's or case's, e.g. "
        '{"max_failures": 0, "no_new_failures": true}; implies --gate',
        show_default=False,
    ),
]

ShardsOption = Annotated[
    str | None,
    typer.Option(
        "--shards",
        help="split a pytest or BDD case across workers: 1 to 64 shards, or auto (the live worker "
        "slots of its queue); overrides the case's own",
        show_default=False,
    ),
]


@app.command("case")
def submit_case(
    case: Annotated[str, typer.Argument(help="test case id (or exact name)")],
    priority: PriorityOption = Priority.NORMAL,
    run_id: RunId = None,
    trigger: Trigger = "api",
    idempotency_key: IdempotencyKey = None,
    revision: Revision = None,
    branch: Branch = None,
    env: Env = None,
    shards: ShardsOption = None,
    wait: Wait = False,
    junit: Junit = None,
    gate: GateOption = False,
    gate_rules: GateRulesOption = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run one test case. Prints the execution id, or with --wait follows it live to the end."""
    check_junit_target(junit)
    api = make_api(api_url, token)
    with exit_on_api_error():
        body = {
            "test_case_id": resolve_case(api, case),
            **case_options(priority, trigger, run_id),
            **source_options(revision, branch, env),
        }
        if shards is not None:  # the API says what is wrong with a bad value
            body["shards"] = int(shards) if shards.isdigit() else shards
        if gate_rules is not None:
            body["gate"] = parse_gate_rules(gate_rules)
        execution = api.call(
            "POST", "/api/v1/executions/case", body=body, headers=idempotency(idempotency_key)
        )
        if not (wait or junit or gate or gate_rules):
            typer.echo(execution["id"])
            return
        final = follow_case(api, execution, out=console())
    finish(api, final, junit, gate=gate or gate_rules is not None)


@app.command("cases")
def submit_cases(
    cases: Annotated[list[str], typer.Argument(help="test case ids (or exact names); one execution each")],
    priority: PriorityOption = Priority.NORMAL,
    run_id: RunId = None,
    trigger: Trigger = "api",
    idempotency_key: IdempotencyKey = None,
    revision: Revision = None,
    branch: Branch = None,
    env: Env = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run several test cases in one request (all or none). Prints the execution ids in order.

    Each becomes its own execution, as with `submit case`; to follow many together, make a suite.
    """
    if len(cases) > MAX_BATCH:
        raise typer.BadParameter(f"at most {MAX_BATCH} cases per request", param_hint="CASES")
    api = make_api(api_url, token)
    with exit_on_api_error():
        common = {**case_options(priority, trigger, run_id), **source_options(revision, branch, env)}
        items = [{"test_case_id": resolve_case(api, case), **common} for case in cases]
        batch = api.call(
            "POST", "/api/v1/executions/batch", body={"items": items}, headers=idempotency(idempotency_key)
        )
    for execution in batch["items"]:
        typer.echo(execution["id"])


@app.command("suite")
def submit_suite(
    suite: Annotated[str, typer.Argument(help="test suite id (or exact name)")],
    priority: Annotated[
        Priority | None,
        typer.Option(case_sensitive=False, show_default=False, help="queue priority (default: the suite's)"),
    ] = None,
    run_id: RunId = None,
    trigger: Trigger = "api",
    idempotency_key: IdempotencyKey = None,
    revision: Revision = None,
    branch: Branch = None,
    env: Env = None,
    wait: Wait = False,
    junit: Junit = None,
    gate: GateOption = False,
    gate_rules: GateRulesOption = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run every member of a suite. Prints the suite execution id, or with --wait shows its progress."""
    check_junit_target(junit)
    api = make_api(api_url, token)
    with exit_on_api_error():
        body: dict[str, Any] = {
            "test_suite_id": resolve(api, "/api/v1/test-suites", "test suite", suite),
            "trigger_kind": trigger,
            **source_options(revision, branch, env),
        }
        if priority is not None:
            body["priority"] = priority.value
        if run_id:
            body["run_id"] = run_id
        if gate_rules is not None:
            body["gate"] = parse_gate_rules(gate_rules)
        execution = api.call(
            "POST", "/api/v1/executions/suite", body=body, headers=idempotency(idempotency_key)
        )
        if not (wait or junit or gate or gate_rules):
            typer.echo(execution["id"])
            return
        final = follow_suite(api, execution, out=console())
    finish(api, final, junit, gate=gate or gate_rules is not None)


def case_options(priority: Priority, trigger: str, run_id: str | None) -> dict[str, Any]:
    """What a case submission says besides the case (the same for one case or a batch)."""
    options: dict[str, Any] = {"priority": priority.value, "trigger_kind": trigger}
    if run_id:
        options["run_id"] = run_id
    return options


def source_options(revision: str | None, branch: str | None, env: str | None) -> dict[str, Any]:
    """What was tested: as given, else revision and branch from git when run inside a repository."""
    if revision is None or branch is None:
        found_revision, found_branch = source_from_git()
        revision = revision or found_revision
        branch = branch or found_branch
    given = {"revision": revision, "branch": branch, "environment": env}
    return {key: value for key, value in given.items() if value}


def idempotency(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


def check_junit_target(path: Path | None) -> None:
    """Refuse a report path that cannot be written before anything runs (exit 2)."""
    if path is not None and not path.parent.is_dir():
        raise typer.BadParameter(f"directory {path.parent} does not exist", param_hint="--junit")


def parse_gate_rules(text: str) -> dict[str, Any]:
    """--gate-rules as a JSON object (the API checks the rules themselves)."""
    try:
        rules = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--gate-rules") from exc
    if not isinstance(rules, dict):
        raise typer.BadParameter('give a JSON object, e.g. {"max_failures": 0}', param_hint="--gate-rules")
    return rules


def finish(api: Api, final: dict[str, Any], junit: Path | None, *, gate: bool = False) -> None:
    """Write the JUnit report if asked (also when it did not pass), show the quality gate and what
    a CI system shows, then exit 0 if PASSED, else 1 (with ``gate``: 0 if the gate passed, else 1)."""
    if junit is not None:
        with exit_on_api_error():
            report = api.download(f"/api/v1/executions/{final['id']}/junit.xml")
        try:
            junit.write_bytes(report)
        except OSError as exc:
            typer.echo(f"error: cannot write {junit}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from exc
        console().print(f"JUnit report {escape(str(junit))} ({junit_counts(report)})")
    with exit_on_api_error():
        verdict = verdict_of(api, final)
    system = ci_system(os.environ)
    if system is not None:
        try:
            ci_report(system, api, final, verdict, env=os.environ, junit=junit, echo=raw_echo)
        except ApiError as exc:  # the run's result stands; only the CI extras are missing
            typer.echo(f"warning: no {system} report of the failed tests: {exc}", err=True)
    if verdict is not None:
        console().print(f"quality gate {escape(gate_summary(verdict) or '')}")
    elif gate:
        console().print("no quality gate verdict for this run: the exit code follows its status")
    if gate:
        raise typer.Exit(gate_exit_code(verdict, final["status"]))
    raise typer.Exit(0 if final["status"] == Status.PASSED else 1)


def junit_counts(report: bytes) -> str:
    try:
        root = ElementTree.fromstring(report)
    except ElementTree.ParseError:
        return "not valid XML"
    counts = {key: root.get(key, "0") for key in ("tests", "failures", "errors", "skipped")}
    return ", ".join(f"{value} {key}" for key, value in counts.items())
