"""`anvil status|cancel|retry`: one execution over the API.

Top-level commands, so plain functions: anvil/cli/main.py registers them on the root app.
Exit codes: 0 done, 2 usage or API error.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.gates import gate_summary
from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console, counts_text, styled

ExecutionId = Annotated[str, typer.Argument(help="execution id")]


def status(
    execution_id: ExecutionId,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Show one execution: status, attempt, timings, step results, error."""
    with exit_on_api_error():
        include = "steps,transitions" if as_json else "steps"
        execution = make_api(api_url, token).call(
            "GET", f"/api/v1/executions/{execution_id}", params={"include": include}
        )
    if as_json:
        typer.echo(json.dumps(execution, indent=2))
        return
    out = console()
    case = execution.get("test_case_name") or "?"
    rows = [
        ("execution", execution["id"]),
        ("status", styled(execution["status"])),
        ("suite", f"{escape(case)} ({execution.get('test_suite_id')})")
        if execution.get("progress") is not None and not execution.get("shard_plan")
        else ("test case", f"{escape(case)} ({execution.get('test_case_id')})"),
        ("priority", execution["priority"]),
        ("attempt", f"{execution['attempt']} of {execution['max_attempts']}"),
        ("trigger", execution["trigger_kind"]),
        ("run id", execution.get("run_id")),
        ("worker", execution.get("worker")),
        ("created", execution.get("created_at")),
        ("started", execution.get("started_at")),
        ("finished", execution.get("finished_at")),
        ("duration", f"{execution['duration_s']:.3f}s" if execution.get("duration_s") is not None else None),
        ("summary", _summary_text(execution)),
        ("quality gate", escape(gate_summary(execution.get("gate")) or "") or None),
        ("error", escape(execution["error"]) if execution.get("error") else None),
    ]
    head = Table.grid(padding=(0, 2))
    for label, value in rows:
        if value is not None:
            head.add_row(f"[dim]{label}[/]", str(value))
    out.print(head)
    steps = execution.get("steps") or []
    if steps:
        table = Table("#", "status", "duration", "step", "error", box=None, pad_edge=False)
        for step in steps:
            duration = f"{step['duration_s']:.2f}s" if step.get("duration_s") is not None else ""
            table.add_row(
                str(step["seq"]),
                styled(step["status"]),
                duration,
                escape(step["name"]),
                escape(step.get("error") or ""),
            )
        out.print()
        out.print(table)


def _summary_text(execution: dict[str, Any]) -> str | None:
    progress = execution.get("progress")
    if progress and execution.get("shard_plan"):  # split into shards: its tests, then its shards
        shards = (execution.get("summary") or {}).get("shards") or {}
        spread = f", slowest {shards['imbalance']}x the mean" if shards.get("imbalance") else ""
        tests = counts_text(execution.get("summary") or {})
        return f"{tests}; {progress['done']} of {progress['total']} shards done{spread}"
    if progress:  # a suite: members, not steps
        by_status = ", ".join(f"{n} {status}" for status, n in progress["by_status"].items())
        return f"{progress['done']} of {progress['total']} members done ({by_status})"
    return counts_text(execution.get("summary") or {}) or None


def cancel(
    execution_id: ExecutionId,
    reason: Annotated[str | None, typer.Option(help="recorded with the cancellation")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Cancel an execution (a suite: with its unfinished members). A running test stops within seconds."""
    with exit_on_api_error():
        execution = make_api(api_url, token).call(
            "POST", f"/api/v1/executions/{execution_id}/cancel", body={"reason": reason} if reason else None
        )
    if execution["status"] == "CANCELLED":
        typer.echo(f"{execution['id']}  CANCELLED")
    else:
        typer.echo(f"{execution['id']}  cancel requested ({execution['status']}: its worker stops the test)")


def retry(
    execution_id: Annotated[str, typer.Argument(help="a finished execution's id")],
    repair: Annotated[
        bool, typer.Option("--repair", help="a repair after a fix (trigger_kind repair)")
    ] = False,
    failed_only: Annotated[
        bool,
        typer.Option(
            "--failed-only", help="run only the tests that failed or errored (all shards of a split run)"
        ),
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run a finished execution again as a new child execution. Prints the new execution id."""
    with exit_on_api_error():
        execution = make_api(api_url, token).call(
            "POST",
            f"/api/v1/executions/{execution_id}/retry",
            body={"repair": repair, "failed_only": failed_only},
        )
    typer.echo(execution["id"])
