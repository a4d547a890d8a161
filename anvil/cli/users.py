"""`anvil users create|list|set-role|deactivate|activate|reset-password`: user administration on
the server, straight in the database (ANVIL_DATABASE_URL), e.g. to make the first admin.

Over the API the same is GET/POST/PATCH /api/v1/users (admins). Errors are one line on stderr and
exit code 2, never a traceback (which could show a password hash).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.options import AsJson
from anvil.cli.output import console
from anvil.domain.enums import Role

app = typer.Typer(help="User administration (talks to the database directly).", no_args_is_help=True)

UsernameArg = Annotated[str, typer.Argument(help="the user's name")]
PasswordOption = Annotated[
    str | None, typer.Option(help="default: read ANVIL_PASSWORD, else prompt", show_default=False)
]


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Anvil's errors and the database's as one line and exit code 2; never their arguments."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from anvil.errors import AnvilError

    try:
        yield
    except AnvilError as exc:
        where = f"{exc.field}: " if exc.field else ""
        typer.echo(f"error: {where}{exc.detail}", err=True)
        raise typer.Exit(2) from None
    except OperationalError:
        typer.echo("error: cannot reach the database (check ANVIL_DATABASE_URL)", err=True)
        raise typer.Exit(2) from None
    except DBAPIError as exc:
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        typer.echo(f"error: the database refused the change: {first}", err=True)
        raise typer.Exit(2) from None


def _password(given: str | None) -> str:
    password = given or os.environ.get("ANVIL_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        typer.echo("error: give --password or ANVIL_PASSWORD when not on a terminal", err=True)
        raise typer.Exit(2)
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@app.command("create")
def users_create(
    username: UsernameArg,
    role: Annotated[Role, typer.Option(help="admin, maintainer, tester or viewer")] = Role.TESTER,
    password: PasswordOption = None,
    print_token: Annotated[bool, typer.Option("--token", help="also print an access token")] = False,
) -> None:
    """Create a user (e.g. the first admin).

    Usernames: 1-64 of A-Z a-z 0-9 . _ @ -; passwords: at least 12 characters, not a common one."""
    from anvil.settings import get_settings
    from api.security import token_for
    from db.session import new_session
    from db.users import check_new_account, create_user

    with _clear_errors():
        check_new_account(username=username)
        password = _password(password)
        check_new_account(password=password)
        with new_session() as session, session.begin():
            user = create_user(session, username=username, password=password, role=role)
    typer.echo(f"created {role.value} {username} ({user.id})", err=print_token)
    if print_token:
        typer.echo(token_for(get_settings(), user))


@app.command("list")
def users_list(as_json: AsJson = False) -> None:
    """List users: name, role, active, created."""
    from db.session import new_session
    from db.users import list_users

    with _clear_errors(), new_session() as session:
        users = list_users(session)
    if as_json:
        rows = [
            {
                "id": str(u.id),
                "username": u.username,
                "role": u.role,
                "is_active": u.is_active,
                "created_at": u.created_at.isoformat(),
            }
            for u in users
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "username", "role", "active", "created", box=None, pad_edge=False)
    for u in users:
        active = "yes" if u.is_active else "no"
        table.add_row(str(u.id), escape(u.username), u.role, active, f"{u.created_at:%Y-%m-%d %H:%M}")
    out = console()
    out.print(table) if users else out.print("no users")


def _change(
    username: str,
    what: str,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> None:
    """Change the named user; their access tokens are revoked."""
    from anvil.errors import NotFound
    from db.session import new_session
    from db.users import get_user_by_name, update_user

    with _clear_errors(), new_session() as session, session.begin():
        user = get_user_by_name(session, username)
        if user is None:
            raise NotFound(f"there is no user named {username!r} (see `anvil users list`)")
        update_user(session, user=user, role=role, is_active=is_active, password=password)
    typer.echo(f"{username}: {what}; their access tokens are revoked")


@app.command("set-role")
def users_set_role(
    username: UsernameArg,
    role: Annotated[Role, typer.Argument(help="admin, maintainer, tester or viewer")],
) -> None:
    """Give a user another role."""
    _change(username, f"role {role.value}", role=role)


@app.command("deactivate")
def users_deactivate(username: UsernameArg) -> None:
    """Stop a user from signing in or using any token (their API tokens included)."""
    _change(username, "deactivated", is_active=False)


@app.command("activate")
def users_activate(username: UsernameArg) -> None:
    """Let a deactivated user sign in again."""
    _change(username, "activated", is_active=True)


@app.command("reset-password")
def users_reset_password(username: UsernameArg, password: PasswordOption = None) -> None:
    """Set a user's password (at least 12 characters, not a common one)."""
    from db.users import check_new_account

    with _clear_errors():
        password = _password(password)
        check_new_account(password=password)
    _change(username, "password set", password=password)
