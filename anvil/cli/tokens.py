"""`anvil tokens create|list|revoke`: API tokens for bots (CI), over the API.

A token is shown once, when it is created; the API keeps only its hash. Creating one needs a
signed-in user's token (ANVIL_TOKEN from POST /api/v1/auth/token or `anvil dev`), not an API token.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console
from anvil.domain.enums import Role

app = typer.Typer(help="API tokens for bots such as CI (over the API).", no_args_is_help=True)


def _days(expires: str) -> int | None:
    """ "90d" -> 90, "never" -> None."""
    if expires == "never":
        return None
    match = re.fullmatch(r"([0-9]{1,4})d", expires)
    if not match or not 1 <= int(match[1]) <= 3650:
        raise typer.BadParameter(
            "give a number of days from 1d to 3650d, e.g. 90d, or never", param_hint="--expires"
        )
    return int(match[1])


def _when(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


@app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="what the token is for, e.g. ci")],
    role: Annotated[
        Role | None, typer.Option(help="the token's role, at most yours (default: yours)")
    ] = None,
    expires: Annotated[str, typer.Option(help="lifetime in days, e.g. 90d, or never")] = "90d",
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create an API token and print it (only this once: store it as a secret, e.g. ANVIL_TOKEN in CI)."""
    body: dict[str, Any] = {"name": name, "expires_in_days": _days(expires)}
    if role is not None:
        body["role"] = role.value
    with exit_on_api_error():
        created = make_api(api_url, token).call("POST", "/api/v1/tokens", body=body)
    if as_json:
        typer.echo(json.dumps(created, indent=2))
        return
    until = f"expires {_when(created['expires_at'])} UTC" if created["expires_at"] else "never expires"
    typer.echo(
        f"created API token {created['name']} ({created['id']}), role {created['role']}, {until}", err=True
    )
    typer.echo("it is shown only now; keep it as a secret (e.g. ANVIL_TOKEN in CI):", err=True)
    typer.echo(created["token"])


def _list(api_url: str, token: str | None) -> list[dict[str, Any]]:
    with exit_on_api_error():
        return list(make_api(api_url, token).call("GET", "/api/v1/tokens")["items"])


@app.command("list")
def tokens_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List API tokens (an admin sees everyone's): name, role, created, expires, last used."""
    items = _list(api_url, token)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "name", "user", "role", "created", "expires", "last used", box=None, pad_edge=False)
    for t in items:
        table.add_row(
            t["id"],
            escape(t["name"]),
            escape(t["username"]),
            t["role"],
            _when(t["created_at"]),
            _when(t["expires_at"]) if t["expires_at"] else "never",
            _when(t["last_used_at"]) if t["last_used_at"] else "never",
        )
    out = console()
    out.print(table) if items else out.print("no API tokens")


@app.command("revoke")
def tokens_revoke(
    ref: Annotated[str, typer.Argument(help="the token's id (or its name, if only one token has it)")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Revoke an API token: it stops working at once."""
    try:
        token_id = str(uuid.UUID(ref))
    except ValueError:
        named = [t for t in _list(api_url, token) if t["name"] == ref]
        if len(named) != 1:
            found = "no API token" if not named else f"{len(named)} API tokens"
            typer.echo(f"error: {found} named {ref!r}; give its id (see `anvil tokens list`)", err=True)
            raise typer.Exit(2) from None
        token_id = named[0]["id"]
    with exit_on_api_error():
        make_api(api_url, token).call("DELETE", f"/api/v1/tokens/{token_id}")
    typer.echo(f"revoked API token {token_id}")
