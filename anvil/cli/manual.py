"""`anvil manual queue` and `anvil manual run`: perform a manual test step by step in the terminal."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from anvil.cli.http import Api, ApiError, exit_on_api_error, make_api
from anvil.cli.options import ApiUrl, Token
from anvil.cli.output import console

app = typer.Typer(help="Manual tests: the queue, and performing one step by step.", no_args_is_help=True)

OUTCOMES = {"p": "passed", "f": "failed", "b": "blocked", "s": "skipped"}


@app.command("queue")
def queue(api_url: ApiUrl = "http://127.0.0.1:8000", token: Token = None) -> None:
    """Manual executions waiting for a tester, highest priority first."""
    out = console()
    with exit_on_api_error():
        items = make_api(api_url, token).call("GET", "/api/v1/manual/queue")
    if not items:
        out.print("no manual tests are waiting")
        return
    table = Table("execution", "test", "priority", "waiting since", "assigned to")
    for ex in items:
        table.add_row(
            ex["id"], escape(ex.get("test_case_name") or ""), ex["priority"], ex["created_at"],
            ex.get("assigned_to") or "-",
        )  # fmt: skip
    out.print(table)


@app.command("run")
def run(
    execution_id: str,
    api_url: ApiUrl = "http://127.0.0.1:8000",
    token: Token = None,
) -> None:
    """Take a PAUSED manual execution and record each step's outcome as you perform it.

    Exit code: 0 when the test PASSED, 1 when it did not, 2 on API errors. Quitting midway keeps
    what you recorded and leaves the test assigned to you; run the command again to go on.
    """
    out = console()
    api = make_api(api_url, token)
    with exit_on_api_error():
        execution = api.call("POST", f"/api/v1/executions/{execution_id}/assign")
        steps = api.call("GET", f"/api/v1/executions/{execution_id}/steps")
        case = _case(api, execution)
        out.print(Panel(escape(case.get("instructions") or "(no instructions)"),
                        title=escape(execution.get("test_case_name") or "manual test")))  # fmt: skip
        for step in steps:
            if step["status"] != "not_run":
                out.print(f"[dim]step {step['seq']}: already recorded {step['status']}[/dim]")
                continue
            result = _ask(out, step, total=len(steps))
            if result is None:
                out.print("stopped; your results so far are saved and the test stays assigned to you")
                raise typer.Exit(1)
            recorded = api.call("POST", f"/api/v1/executions/{execution_id}/steps/{step['seq']}", body=result)
            execution = recorded["execution"]
    status = execution["status"]
    out.print(
        f"result: [bold]{status}[/bold]"
        + (f" ({escape(execution['error'])})" if execution.get("error") else "")
    )
    raise typer.Exit(0 if status == "PASSED" else 1)


def _case(api: Api, execution: dict[str, Any]) -> dict[str, Any]:
    try:
        case = api.call("GET", f"/api/v1/test-cases/{execution['test_case_id']}")
    except ApiError:
        return {}
    return case.get("spec", {})


def _ask(out: Any, step: dict[str, Any], *, total: int) -> dict[str, Any] | None:
    details = step.get("details", {})
    out.print(f"\n[bold]step {step['seq']}/{total}[/bold]: {escape(details.get('action') or step['name'])}")
    if details.get("expected"):
        out.print(f"  expected: {escape(details['expected'])}")
    while True:
        answer = typer.prompt("  outcome [p]assed/[f]ailed/[b]locked/[s]kipped/[q]uit").strip().lower()[:1]
        if answer == "q":
            return None
        if answer in OUTCOMES:
            break
        out.print("  please answer p, f, b, s or q")
    actual = typer.prompt("  actual result (optional)", default="", show_default=False)
    comment = typer.prompt("  comment (optional)", default="", show_default=False)
    return {"status": OUTCOMES[answer], "actual": actual or None, "comment": comment or None}
