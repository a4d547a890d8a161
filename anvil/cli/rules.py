"""`anvil rules list`: the selection rules `anvil execute --rule` takes, with what each means."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console

app = typer.Typer(help="Selection rules (over the API).", no_args_is_help=True)


@app.command("list")
def rules_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Each rule with its parameter and a one-line meaning."""
    with exit_on_api_error():
        rules = make_api(api_url, token).call("GET", "/api/v1/rules")["items"]
    if as_json:
        typer.echo(json.dumps(rules, indent=2))
        return
    table = Table("rule", "meaning", box=None, pad_edge=False)
    for rule in rules:
        table.add_row(escape(rule["syntax"]), escape(rule["meaning"]))
    console().print(table)
