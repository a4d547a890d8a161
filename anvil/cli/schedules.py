"""`anvil schedules list|create|pause|resume|trigger`: cron schedules over the API.

They go through the same HTTP helper as the other client commands (anvil/cli/http.py), with the
same ANVIL_API_URL / ANVIL_TOKEN options and exit codes (0 done, 2 usage or API error).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.lookup import pages, resolve, resolve_case
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, PriorityOption, Token
from anvil.cli.output import console
from anvil.domain.enums import Priority

app = typer.Typer(help="Cron schedules (over the API).", no_args_is_help=True)

ScheduleRef = Annotated[str, typer.Argument(help="schedule id (or exact name)")]
OVERLAPS = ("skip", "allow", "cancel_previous")


def _schedule_line(schedule: dict[str, Any]) -> str:
    upcoming = schedule["next_fire_times"][0] if schedule["next_fire_times"] else "paused"
    return f"{schedule['id']}  {schedule['name']}  next: {upcoming}"


@app.command("list")
def schedules_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List schedules with their next fire time (UTC)."""
    with exit_on_api_error():
        items = list(pages(make_api(api_url, token), "/api/v1/schedules", {}, 10_000))
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(
        "id", "name", "cron", "timezone", "target", "state", "overlap", "next", box=None, pad_edge=False
    )
    for s in items:
        target = f"case {s['test_case_id']}" if s["test_case_id"] else f"suite {s['test_suite_id']}"
        state = "enabled" if s["enabled"] else "paused"
        if s.get("disabled_reason"):
            state = f"disabled: {escape(s['disabled_reason'])}"
        upcoming = s["next_fire_times"][0] if s["next_fire_times"] else "-"
        table.add_row(
            s["id"], escape(s["name"]), s["cron"], s["timezone"], target, state, s["overlap"], upcoming
        )
    out = console()
    out.print(table) if items else out.print("no schedules")


@app.command("create")
def schedules_create(
    name: Annotated[str, typer.Option(help="unique name, e.g. nightly-regression")],
    cron: Annotated[str, typer.Option(help="five cron fields, e.g. '0 2 * * *'")],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone the cron is read in")] = "UTC",
    case: Annotated[str | None, typer.Option("--case", help="run this test case (id or name)")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="run this test suite (id or name)")] = None,
    priority: PriorityOption = Priority.NORMAL,
    overlap: Annotated[
        str, typer.Option(help="while the previous run is going: skip, allow or cancel_previous")
    ] = "skip",
    disabled: Annotated[bool, typer.Option("--disabled", help="create it paused")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Create a schedule (maintainer or admin) for a case or a suite. Prints its id, name, next fire."""
    if (case is None) == (suite is None):
        raise typer.BadParameter("give exactly one of --case and --suite", param_hint="--case/--suite")
    if overlap not in OVERLAPS:
        raise typer.BadParameter(f"choose one of {', '.join(OVERLAPS)}", param_hint="--overlap")
    api = make_api(api_url, token)
    with exit_on_api_error():
        body: dict[str, Any] = {
            "name": name,
            "cron": cron,
            "timezone": tz,
            "priority": priority.value,
            "overlap": overlap,
            "enabled": not disabled,
        }
        if case is not None:
            body["test_case_id"] = resolve_case(api, case)
        else:
            body["test_suite_id"] = resolve(api, "/api/v1/test-suites", "test suite", suite or "")
        schedule = api.call("POST", "/api/v1/schedules", body=body)
    typer.echo(_schedule_line(schedule))


def _set_enabled(ident: str, enabled: bool, api_url: str, token: str | None) -> None:
    api = make_api(api_url, token)
    with exit_on_api_error():
        schedule_id = resolve(api, "/api/v1/schedules", "schedule", ident)
        schedule = api.call("PATCH", f"/api/v1/schedules/{schedule_id}", body={"enabled": enabled})
    typer.echo(_schedule_line(schedule))


@app.command("pause")
def schedules_pause(schedule: ScheduleRef, api_url: ApiUrl = DEFAULT_API_URL, token: Token = None) -> None:
    """Stop a schedule from firing (from the scheduler's next tick)."""
    _set_enabled(schedule, False, api_url, token)


@app.command("resume")
def schedules_resume(schedule: ScheduleRef, api_url: ApiUrl = DEFAULT_API_URL, token: Token = None) -> None:
    """Let a paused schedule fire again; slots missed while paused are not made up."""
    _set_enabled(schedule, True, api_url, token)


@app.command("trigger")
def schedules_trigger(schedule: ScheduleRef, api_url: ApiUrl = DEFAULT_API_URL, token: Token = None) -> None:
    """Run a schedule's target now. Prints the new execution id."""
    api = make_api(api_url, token)
    with exit_on_api_error():
        schedule_id = resolve(api, "/api/v1/schedules", "schedule", schedule)
        execution = api.call("POST", f"/api/v1/schedules/{schedule_id}/trigger")
    typer.echo(execution["id"])
