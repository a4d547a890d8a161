"""Test secret commands over the API (admin only): `anvil secrets set|list|delete`.

A value is never taken from the command line, where shell history and `ps` would keep it: it is
read from --value-file, else from standard input when that is not a terminal, else prompted for
without echo. Same ANVIL_API_URL / ANVIL_TOKEN options and exit codes as the other client
commands (0 done, 2 usage or API error).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console
from anvil.domain.specs.env import NAME_PATTERN, NAME_RULE

app = typer.Typer(
    help='Test secrets (admin only, over the API): values a case\'s env names as {"secret": NAME}.',
    no_args_is_help=True,
)


def _name(value: str) -> str:
    if not re.match(NAME_PATTERN, value):
        raise typer.BadParameter(NAME_RULE)
    return value


SecretName = Annotated[str, typer.Argument(help="the secret's name, e.g. deploy-token", callback=_name)]


def _read_value(value_file: Path | None) -> str:
    """The value from the file (``-``: standard input), piped input, or a hidden prompt."""
    try:
        if value_file is not None and str(value_file) != "-":
            text = value_file.read_text(encoding="utf-8")
        elif value_file is not None or not sys.stdin.isatty():
            text = sys.stdin.read()
        else:
            return typer.prompt("value", hide_input=True, confirmation_prompt=True)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {value_file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{value_file or 'standard input'} is not UTF-8 text") from exc
    # One trailing line break is how files and `echo` end; it is not part of the value.
    return text.removesuffix("\n").removesuffix("\r")


@app.command("set")
def secrets_set(
    name: SecretName,
    value_file: Annotated[
        Path | None,
        typer.Option(
            "--value-file",
            help="read the value from this file ('-': standard input); without it, piped standard "
            "input or a hidden prompt. One trailing newline is dropped.",
        ),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Create or replace a test secret (admin). The value is stored encrypted and never shown again."""
    value = _read_value(value_file)
    if not value:
        raise typer.BadParameter("the value is empty", param_hint="value")
    with exit_on_api_error():
        secret = make_api(api_url, token).call("PUT", f"/api/v1/secrets/{name}", body={"value": value})
    done = "created" if secret["created_at"] == secret["updated_at"] else "updated"
    typer.echo(f"{done} test secret {secret['name']}")


@app.command("list")
def secrets_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List test secrets: names, when they were set and by whom (never their values)."""
    with exit_on_api_error():
        items = make_api(api_url, token).call("GET", "/api/v1/secrets")["items"]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("name", "updated", "by", "created", "by", box=None, pad_edge=False)
    for s in items:
        table.add_row(
            escape(s["name"]),
            s["updated_at"],
            escape(s["updated_by_name"] or "-"),
            s["created_at"],
            escape(s["created_by_name"] or "-"),
        )
    out = console()
    out.print(table) if items else out.print("no test secrets")


@app.command("delete")
def secrets_delete(name: SecretName, api_url: ApiUrl = DEFAULT_API_URL, token: Token = None) -> None:
    """Delete a test secret (admin). Refused while a test case names it."""
    with exit_on_api_error():
        make_api(api_url, token).call("DELETE", f"/api/v1/secrets/{name}")
    typer.echo(f"deleted test secret {name}")
