"""`anvil api|worker|beat`: the server processes, each refusing unusable settings up front.

Top-level commands, so plain functions: anvil/cli/main.py registers them on the root app.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from anvil.domain.enums import QUEUES

if TYPE_CHECKING:
    from anvil.settings import Settings

MetricsPort = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="serve Prometheus metrics on this port (/metrics); default: none"),
]
MetricsHost = Annotated[str, typer.Option(help="address the metrics port listens on")]


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
    """Run the HTTP API (its Prometheus metrics at /metrics)."""
    _prepare_metrics("api")
    import uvicorn

    from anvil.hardening import make_undumpable, secrets_in_environment

    settings = _server_settings("api", listen_host=host or "")
    # Non-dumpable now; the secrets leave the environment in protected_api_app (anvil/cli/asgi.py),
    # which runs in each serving process (with --workers N, uvicorn starts N fresh interpreters from
    # this environment).
    make_undumpable()
    if workers > 1 and secrets_in_environment():
        typer.echo(
            f"anvil api: warning: {', '.join(secrets_in_environment())} given as environment variables: "
            "with --workers, uvicorn starts each worker process (and a multiprocessing helper) as a "
            "new program with this environment, readable by other processes of this user; give "
            "them as files (ANVIL_<NAME>_FILE) instead",
            err=True,
        )
    connections = settings.pool_size + settings.db_max_overflow
    typer.echo(
        f"anvil api: {workers} process{'es' if workers > 1 else ''}, each with {settings.api_threads} "
        f"threads and at most {connections} database connections ({workers * connections} in all; "
        "PostgreSQL's max_connections must also leave room for the workers and beat)",
        err=True,
    )
    uvicorn.run(
        "anvil.cli.asgi:protected_api_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Idle connections are kept longer than clients keep theirs (httpx: 5 s, uvicorn's default too),
        # so a client never sends a request on a connection the server is closing at that moment.
        timeout_keep_alive=75,
    )


def _server_settings(role: str, *, listen_host: str | None = None) -> Settings:
    """A server process's settings: a clear error (exit 2) instead of a traceback when they are
    unusable, and no development key unless everything stays on this machine. ``listen_host``:
    the API's address ("" for ANVIL_API_HOST); None for processes that do not listen."""
    from pydantic import ValidationError

    from anvil.hardening import dev_secret_refusal
    from anvil.settings import SettingsFileError, get_settings

    try:
        settings = get_settings()
    except SettingsFileError as exc:
        typer.echo(f"anvil {role}: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        # Without the values: a rejected secret must not end up in the logs.
        problems = "; ".join(
            (f"ANVIL_{str(e['loc'][0]).upper()}: " if e["loc"] else "") + e["msg"] for e in exc.errors()
        )
        typer.echo(f"anvil {role}: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None
    if listen_host == "":  # the API without --host: it listens on ANVIL_API_HOST
        listen_host = settings.api_host
    refusal = dev_secret_refusal(settings, role=role, listen_host=listen_host)
    if refusal:
        typer.echo(refusal, err=True)
        raise typer.Exit(2)
    return settings


def worker(
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="queues to consume, highest priority first")
    ] = ",".join(QUEUES),
    concurrency: Annotated[
        int | None, typer.Option("-c", "--concurrency", help="parallel test slots")
    ] = None,
    hostname: Annotated[str | None, typer.Option("-n", "--hostname", help="worker name, e.g. w1@%h")] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "0.0.0.0",
) -> None:
    """Run a worker that executes tests (scale by starting more, on any host)."""
    unknown = [q for q in queues.split(",") if q not in QUEUES]
    if unknown:
        raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
    _prepare_metrics("worker")
    settings = _server_settings("worker")
    from anvil.hardening import protect_process
    from workers.celery_app import app as celery

    _check_sandbox(settings)
    # Before the pool forks: its children write their metrics where this process serves them.
    _serve_metrics("worker", settings, metrics_port, metrics_host)
    # Tests run in this process's pool children (forked: they keep what this does).
    protect_process()
    argv = [
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency or settings.worker_concurrency),
        "-l",
        settings.log_level,
    ]
    # Keep heartbeats (no --without-heartbeat): without them and without task events, Celery would
    # disable the worker's event dispatcher, and Flower's enable_events could not turn it on.
    argv += ["-O", "fair", "--without-gossip", "--without-mingle"]
    if hostname:
        argv += ["-n", hostname]
    celery.worker_main(argv)


def _prepare_metrics(role: str) -> None:
    """Before anything loads prometheus_client: the directory this process and its children (the
    API's uvicorn workers, a worker's pool) write their metrics to (anvil/metrics_export.py)."""
    from anvil.metrics_export import MULTIPROC_ENV, prepare_directory

    try:
        prepare_directory(role)
    except OSError as exc:
        where = exc.filename or os.environ.get(MULTIPROC_ENV, "")
        typer.echo(f"anvil {role}: cannot make the metrics directory {where}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


def _serve_metrics(role: str, settings: Settings, port: int | None, host: str) -> None:
    """Serve this process's metrics (with its pool children's) on ``port``, if one is given."""
    if port is None:
        return
    from anvil.metrics_export import serve

    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    try:
        serve(port, host=host, token=token)
    except OSError as exc:
        typer.echo(f"anvil {role}: cannot serve metrics on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"anvil {role}: Prometheus metrics on http://{host}:{port}/metrics", err=True)


def _check_sandbox(settings: Settings) -> None:
    """Refuse to run tests unconfined unless told to (ANVIL_SANDBOX=off), and then say so loudly."""
    from workers.confinement import sandbox_problem

    problem = sandbox_problem(settings)
    if problem:
        typer.echo(f"anvil worker: cannot sandbox tests: {problem}", err=True)
        raise typer.Exit(2)
    if settings.sandbox == "off":
        typer.secho(
            "WARNING: ANVIL_SANDBOX=off: tests run as this worker's user, unconfined, and can read its "
            "secrets (database and broker URLs, the signing key). Use this only for trusted tests.",
            err=True,
            fg=typer.colors.RED,
            bold=True,
        )


def beat(metrics_port: MetricsPort = None, metrics_host: MetricsHost = "0.0.0.0") -> None:
    """Run the scheduler (Celery beat with Anvil's tick). Several may run; one acts at a time."""
    _prepare_metrics("beat")
    settings = _server_settings("beat")
    from anvil.hardening import protect_process
    from workers.celery_app import app as celery

    _serve_metrics("beat", settings, metrics_port, metrics_host)
    protect_process()
    celery.start(["beat", "-l", settings.log_level, "--scheduler", "scheduler.beat:AnvilScheduler"])
