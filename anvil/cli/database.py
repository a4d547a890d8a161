"""`anvil db upgrade`: database administration."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Database administration.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply database migrations (ANVIL_DATABASE_URL)."""
    from anvil.migrate import upgrade

    upgrade(revision=revision)
    typer.echo(f"database at {revision}")
