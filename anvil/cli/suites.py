"""`anvil suites create|list`: test suites over the API (`anvil submit suite` runs one).

A suite file is the API's suite body, plus ``cases``: test case names (or ids) resolved to ids
here, so a suite file works on any installation that has cases of those names::

    {"name": "nightly", "cases": ["hello", "pytest-demo-smoke"], "tags": ["smoke"],
     "fail_fast": false, "default_priority": "LOW"}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.lookup import pages, suite_body
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console

app = typer.Typer(help="Test suites (over the API).", no_args_is_help=True)


@app.command("create")
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


@app.command("list")
def suites_list(
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """List test suites, newest first."""
    with exit_on_api_error():
        suites = list(pages(make_api(api_url, token), "/api/v1/test-suites", {}, limit))
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
