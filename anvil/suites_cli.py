"""Suite commands over the API: `anvil suites create|list` and `anvil submit suite`.

A suite file is the API's suite body, plus ``cases``: test case names (or ids) resolved to ids
here, so a suite file works on any installation that has cases of those names::

    {"name": "nightly", "cases": ["hello", "pytest-demo-smoke"], "tags": ["smoke"],
     "fail_fast": false, "default_priority": "LOW"}
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli import app
from anvil.client import (
    IdempotencyKey,
    Junit,
    RunId,
    Trigger,
    Wait,
    _pages,
    check_junit_target,
    finish,
    idempotency,
    resolve,
    submit_app,
)
from anvil.domain.enums import Priority
from anvil.follow import follow_suite
from anvil.http_client import (
    DEFAULT_API_URL,
    Api,
    ApiError,
    ApiUrl,
    AsJson,
    Token,
    console,
    exit_on_api_error,
    make_api,
)

suites_app = typer.Typer(help="Test suites (over the API).", no_args_is_help=True)
app.add_typer(suites_app, name="suites")


def suite_body(api: Api, definition: Any) -> dict[str, Any]:
    """The API body of a suite file: ``cases`` (names or ids) become ``case_ids``."""
    if not isinstance(definition, dict):
        raise ApiError("a suite definition is a JSON object with at least a name")
    body = dict(definition)
    cases = body.pop("cases", None)
    if cases is None:
        return body
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise ApiError("cases: give a list of test case names or ids")
    ids = resolve_cases(api, cases)
    body["case_ids"] = list(dict.fromkeys([*(body.get("case_ids") or []), *ids]))
    return body


def resolve_cases(api: Api, idents: list[str]) -> list[str]:
    """Case ids for names or ids, with one listing of the catalogue; every unknown name is reported."""
    ids: dict[str, str] = {}
    for ident in idents:
        try:
            ids[ident] = str(uuid.UUID(ident))
        except ValueError:
            pass
    wanted = {ident for ident in idents if ident not in ids}
    if wanted:
        for case in _pages(api, "/api/v1/test-cases", {}, 100_000):
            if case["name"] in wanted:
                ids[case["name"]] = str(case["id"])
    missing = [ident for ident in idents if ident not in ids]
    if missing:
        raise ApiError(f"cases: no test case named {', '.join(map(repr, missing))}")
    return [ids[ident] for ident in idents]


@suites_app.command("create")
def suites_create(
    file: Annotated[Path, typer.Option("--file", "-f", help="suite definition (JSON); - for stdin")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the new suite id")] = False,
) -> None:
    """Define a suite from a JSON file (maintainer or admin): cases by name, tags, fail_fast, priority."""
    try:
        definition = json.loads(sys.stdin.read() if str(file) == "-" else file.read_text())
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from exc
    except json.JSONDecodeError as exc:
        typer.echo(f"error: {file} is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    api = make_api(api_url, token)
    with exit_on_api_error():
        suite = api.call("POST", "/api/v1/test-suites", body=suite_body(api, definition))
    typer.echo(suite["id"] if quiet else f"{suite['id']}  {suite['name']}")


@suites_app.command("list")
def suites_list(
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """List test suites, newest first."""
    with exit_on_api_error():
        suites = list(_pages(make_api(api_url, token), "/api/v1/test-suites", {}, limit))
    if as_json:
        typer.echo(json.dumps(suites, indent=2))
        return
    table = Table("id", "name", "cases", "tags", "fail_fast", "priority", "version", box=None, pad_edge=False)
    for suite in suites:
        table.add_row(
            suite["id"],
            escape(suite["name"]),
            str(len(suite["case_ids"])),
            escape(",".join(suite["tags"])),
            "yes" if suite["fail_fast"] else "no",
            suite["default_priority"],
            str(suite["version"]),
        )
    out = console()
    out.print(table) if suites else out.print("no test suites")


@submit_app.command("suite")
def submit_suite(
    suite: Annotated[str, typer.Argument(help="test suite id (or exact name)")],
    priority: Annotated[
        Priority | None,
        typer.Option(case_sensitive=False, show_default=False, help="queue priority (default: the suite's)"),
    ] = None,
    run_id: RunId = None,
    trigger: Trigger = "api",
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
    junit: Junit = None,
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
        }
        if priority is not None:
            body["priority"] = priority.value
        if run_id:
            body["run_id"] = run_id
        execution = api.call(
            "POST", "/api/v1/executions/suite", body=body, headers=idempotency(idempotency_key)
        )
        if not (wait or junit):
            typer.echo(execution["id"])
            return
        final = follow_suite(api, execution, out=console())
    finish(api, final, junit)
