"""`anvil workers`: the worker registry over the API, which workers run and their capacity per queue.

A top-level command, so a plain function: anvil/cli/main.py registers it on the root app.
Exit codes: 0 done, 2 usage or API error.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console
from anvil.domain.workers import WorkerState

STATE_STYLE = {"live": "green", "stale": "bold red", "stopped": "dim"}


def workers(
    state: Annotated[
        WorkerState | None, typer.Option(case_sensitive=False, help="only the workers in this state")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List the worker processes (live, stale or stopped), their test slots and queues.

    \b
      anvil workers
      anvil workers --state live --json
    """
    params = {"state": state.value} if state else None
    with exit_on_api_error():
        found = make_api(api_url, token).call("GET", "/api/v1/workers", params=params)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    out = console()
    table = Table("name", "state", "slots", "queues", "host", "pid", "version", "last heartbeat", box=None)
    now = datetime.fromisoformat(found["now"])
    for w in found["items"]:
        style = STATE_STYLE.get(w["state"], "")
        table.add_row(
            escape(w["name"]),
            f"[{style}]{w['state']}[/]" if style else w["state"],
            str(w["slots"]),
            ",".join(w["queues"]),
            escape(w["host"]),
            str(w["pid"]),
            escape(w["version"]),
            _ago(now, w["heartbeat_at"]),
        )
    if found["items"]:
        out.print(table)
    else:
        out.print("no workers" + (f" {state.value}" if state else " have registered"))
    totals = found["totals"]
    slots = "  ".join(f"{queue} {count}" for queue, count in totals["live_slots"].items())
    out.print(f"live workers {totals['live_workers']}; live slots per queue: {slots}")


def _ago(now: datetime, at: Any) -> str:
    seconds = max(0.0, (now - datetime.fromisoformat(at)).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"
