"""`anvil import junit`: results run elsewhere (a CI job's JUnit XML report) into Anvil's history.

The report becomes one finished execution of the case (trigger ``ci``) with a step and a test result
per testcase (POST /api/v1/results/junit). Inside a git repository, --revision and --branch default
to its HEAD commit and current branch. Exit codes: 0 imported (whatever the tests' results: the CI
job that ran them already knows), 2 usage or API error (a malformed report, an unknown case).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from anvil.cli.git import source_from_git
from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console, result_line

app = typer.Typer(help="Import results of runs made elsewhere (over the API).", no_args_is_help=True)

Report = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="the JUnit XML report (e.g. report.xml)"),
]
Case = Annotated[str, typer.Option("--case", help="the test case the results belong to (id or exact name)")]
Revision = Annotated[
    str | None,
    typer.Option(help="the commit tested (default: HEAD, inside a git repository)", show_default=False),
]
Branch = Annotated[
    str | None, typer.Option(help="the branch tested (default: the current one, inside a git repository)")
]
Env = Annotated[str | None, typer.Option("--env", help="a free label for where it ran, e.g. staging")]
RunId = Annotated[str | None, typer.Option(help="group executions of one run (e.g. a CI build)")]
IdempotencyKey = Annotated[
    str | None, typer.Option(help="repeat-safe import: the same key (and report) returns the first execution")
]


@app.command("junit")
def import_junit(
    report: Report,
    case: Case,
    revision: Revision = None,
    branch: Branch = None,
    env: Env = None,
    run_id: RunId = None,
    idempotency_key: IdempotencyKey = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Import a JUnit XML report (pytest, Maven surefire, Gradle, jest-junit, go-junit-report) as
    one finished execution of a case. Prints the execution's id and result."""
    fields = {"case": case}
    git_revision, git_branch = source_from_git() if revision is None or branch is None else (None, None)
    source = {
        "revision": revision or git_revision,
        "branch": branch or git_branch,
        "environment": env,
        "run_id": run_id,
    }
    fields |= {name: value for name, value in source.items() if value}
    try:
        data = report.read_bytes()
    except OSError as exc:
        typer.echo(f"error: cannot read {report}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from exc
    with exit_on_api_error():
        execution = make_api(api_url, token).upload(
            "/api/v1/results/junit",
            files={"file": (report.name, data, "application/xml")},
            data=fields,
            headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
        )
    if as_json:
        typer.echo(json.dumps(execution, indent=2))
        return
    where = " ".join(f"{name}={fields[name]}" for name in ("revision", "branch") if name in fields)
    console().print(f"imported {execution['id']} {escape(where)}".rstrip())
    console().print(result_line(execution))
