"""`anvil cases create|list`: test cases over the API.

Like every client command: ANVIL_API_URL and ANVIL_TOKEN (or --api-url/--token); exit code 0
done, 2 usage or API error.
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
from anvil.cli.lookup import pages
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console

app = typer.Typer(help="Test cases (over the API).", no_args_is_help=True)


@app.command("create")
def cases_create(
    file: Annotated[Path, typer.Option("--file", "-f", help="case definition (JSON); - for stdin")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the new case id")] = False,
) -> None:
    """Define a test case from a JSON file (maintainer or admin). Prints its id and name."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
        definition = json.loads(text)
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from exc
    except json.JSONDecodeError as exc:
        typer.echo(f"error: {file} is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    with exit_on_api_error():
        case = make_api(api_url, token).call("POST", "/api/v1/test-cases", body=definition)
    typer.echo(case["id"] if quiet else f"{case['id']}  {case['name']}")


@app.command("list")
def cases_list(
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    kind: Annotated[str | None, typer.Option(help="only this kind: generic, bdd, manual")] = None,
    tag: Annotated[str | None, typer.Option(help="only cases with this tag")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """List test cases, newest first."""
    with exit_on_api_error():
        cases = list(pages(make_api(api_url, token), "/api/v1/test-cases", {"kind": kind, "tag": tag}, limit))
    if as_json:
        typer.echo(json.dumps(cases, indent=2))
        return
    table = Table("id", "name", "kind", "version", "tags", "timeout", box=None, pad_edge=False)
    for case in cases:
        table.add_row(
            case["id"],
            escape(case["name"]),
            case["kind"],
            str(case["version"]),
            escape(",".join(case["tags"])),
            f"{case['timeout_s']}s",
        )
    out = console()
    out.print(table) if cases else out.print("no test cases")
