"""`anvil db upgrade`, `anvil db current`: database administration."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Database administration.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply database migrations (ANVIL_DATABASE_URL). Run again, it does nothing."""
    from anvil.migrate import current, head, upgrade

    before = current()
    upgrade(revision=revision)
    after = current()
    at = f"database at {after}{' (head)' if after == head() else ''}"
    typer.echo(f"{at}: nothing to do" if before == after else f"{at}, upgraded from {before or 'empty'}")


@app.command("current")
def db_current() -> None:
    """The database's migration revision; exits 1 when it is behind this Anvil's migrations."""
    from anvil.migrate import current, head

    at, newest = current(), head()
    if at == newest:
        typer.echo(f"{at} (head)")
        return
    typer.echo(f"{at or 'not migrated'} (this Anvil's migrations go to {newest}: run `anvil db upgrade`)")
    raise typer.Exit(1)
