"""The `anvil` command: server processes, database and user administration, and the API client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from db.enums import QUEUES

app = typer.Typer(help="Anvil: distributed test execution.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address (default ANVIL_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default ANVIL_API_PORT)")] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="uvicorn worker processes; each has ANVIL_API_THREADS threads and its own database pool"
        ),
    ] = 1,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from anvil.settings import get_settings

    settings = get_settings()
    connections = settings.pool_size + settings.db_max_overflow
    typer.echo(
        f"anvil api: {workers} process{'es' if workers > 1 else ''}, each with {settings.api_threads} "
        f"threads and at most {connections} database connections ({workers * connections} in all; "
        "PostgreSQL's max_connections must also leave room for the workers and beat)",
        err=True,
    )
    uvicorn.run(
        "api.app:app",
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="queues to consume, highest priority first")
    ] = ",".join(QUEUES),
    concurrency: Annotated[
        int | None, typer.Option("-c", "--concurrency", help="parallel test slots")
    ] = None,
    hostname: Annotated[str | None, typer.Option("-n", "--hostname", help="worker name, e.g. w1@%h")] = None,
) -> None:
    """Run a worker that executes tests (scale by starting more, on any host)."""
    from anvil.settings import get_settings
    from workers.celery_app import app as celery

    unknown = [q for q in queues.split(",") if q not in QUEUES]
    if unknown:
        raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
    settings = get_settings()
    argv = [
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency or settings.worker_concurrency),
        "-l",
        settings.log_level,
    ]
    argv += ["-O", "fair", "--without-gossip", "--without-mingle"]
    if hostname:
        argv += ["-n", hostname]
    celery.worker_main(argv)


@app.command()
def beat() -> None:
    """Run the scheduler (Celery beat with Anvil's tick). Several may run; one acts at a time."""
    from anvil.settings import get_settings
    from workers.celery_app import app as celery

    celery.start(["beat", "-l", get_settings().log_level, "--scheduler", "scheduler.beat:AnvilScheduler"])


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply database migrations (ANVIL_DATABASE_URL)."""
    from anvil.migrate import upgrade

    upgrade(revision=revision)
    typer.echo(f"database at {revision}")


@app.command()
def dev(
    port: Annotated[int, typer.Option(envvar="ANVIL_API_PORT", help="API port")] = 8000,
    flower_port: Annotated[int, typer.Option(help="Flower port")] = 5555,
    flower: Annotated[bool, typer.Option("--flower/--no-flower", help="also run Flower")] = True,
    broker: Annotated[
        str,
        typer.Option(
            help="auto: ANVIL_REDIS_URL, else a private redis-server if on PATH, else filesystem://; "
            "or force redis-server / filesystem"
        ),
    ] = "auto",
    workspace_root: Annotated[
        Path | None, typer.Option(help="default: ANVIL_WORKSPACE_ROOT, ./examples/workspaces, ./workspaces")
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="run the sample case once started")] = False,
    exit_after_demo: Annotated[
        bool, typer.Option("--exit-after-demo", help="run the sample case, then stop (exit 0 if it PASSED)")
    ] = False,
) -> None:
    """Standalone mode: API, worker, beat and Flower on SQLite (./.anvil) in one command."""
    from anvil.dev import Options, run_dev

    if broker not in ("auto", "redis-server", "filesystem"):
        raise typer.BadParameter("choose auto, redis-server or filesystem", param_hint="--broker")
    options = Options(
        port=port,
        flower_port=flower_port,
        flower=flower,
        broker=broker,  # type: ignore[arg-type]
        workspace_root=workspace_root,
        demo=demo,
        exit_after_demo=exit_after_demo,
    )
    raise typer.Exit(run_dev(options))


def main() -> None:
    from anvil import (  # noqa: F401  (the API client commands)
        client,
        manual_cli,
        schedules_cli,
        secrets_cli,
        suites_cli,
        tokens_cli,
        users_cli,
    )

    app()
