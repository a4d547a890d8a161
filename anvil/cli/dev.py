"""`anvil dev`: standalone mode (the embedded default), API, worker, beat and Flower in one command.

A top-level command, so a plain function: anvil/cli/main.py registers it. What it runs is
anvil/cli/standalone.py, imported only when it runs (it loads the migrations and the supervisor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
    from anvil.cli.standalone import Options, run_dev

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
