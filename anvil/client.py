"""API client commands (`anvil cases …`, `anvil submit case …`, `anvil status …`) and their HTTP helper.

They talk to the API over HTTP like any user: ANVIL_API_URL and ANVIL_TOKEN (or --api-url/--token).
Exit codes: 0 done (or PASSED), 1 the execution did not pass, 2 usage or API error.
`--wait` follows the live event stream (anvil/follow.py); suites are in anvil/suites_cli.py.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli import app
from anvil.domain.enums import Priority
from anvil.domain.states import Status
from anvil.http_client import (
    DEFAULT_API_URL,
    Api,
    ApiError,
    ApiUrl,
    AsJson,
    Token,
    console,
    exit_on_api_error,
    make_api,
)

cases_app = typer.Typer(help="Test cases (over the API).", no_args_is_help=True)
submit_app = typer.Typer(help="Submit executions (over the API).", no_args_is_help=True)
app.add_typer(cases_app, name="cases")
app.add_typer(submit_app, name="submit")


# ---- cases ---------------------------------------------------------------------------------------


@cases_app.command("create")
def cases_create(
    file: Annotated[Path, typer.Option("--file", "-f", help="case definition (JSON); - for stdin")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the new case id")] = False,
) -> None:
    """Define a test case from a JSON file (maintainer or admin). Prints its id and name."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
        definition = json.loads(text)
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from exc
    except json.JSONDecodeError as exc:
        typer.echo(f"error: {file} is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    with exit_on_api_error():
        case = make_api(api_url, token).call("POST", "/api/v1/test-cases", body=definition)
    typer.echo(case["id"] if quiet else f"{case['id']}  {case['name']}")


@cases_app.command("list")
def cases_list(
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    kind: Annotated[str | None, typer.Option(help="only this kind: generic, bdd, manual")] = None,
    tag: Annotated[str | None, typer.Option(help="only cases with this tag")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """List test cases, newest first."""
    with exit_on_api_error():
        cases = list(
            _pages(make_api(api_url, token), "/api/v1/test-cases", {"kind": kind, "tag": tag}, limit)
        )
    if as_json:
        typer.echo(json.dumps(cases, indent=2))
        return
    table = Table("id", "name", "kind", "version", "tags", "timeout", box=None, pad_edge=False)
    for case in cases:
        table.add_row(
            case["id"],
            escape(case["name"]),
            case["kind"],
            str(case["version"]),
            escape(",".join(case["tags"])),
            f"{case['timeout_s']}s",
        )
    out = console()
    out.print(table) if cases else out.print("no test cases")


def _pages(api: Api, path: str, filters: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
    params = {k: v for k, v in filters.items() if v is not None}
    cursor: str | None = None
    seen = 0
    while seen < limit:
        page = api.call("GET", path, params={**params, "limit": min(limit - seen, 200), "cursor": cursor})
        yield from page["items"]
        seen += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor or not page["items"]:
            return


def resolve(api: Api, path: str, what: str, ident: str) -> str:
    """An id given as a UUID, or looked up by exact name in the collection at ``path``."""
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        pass
    for item in _pages(api, path, {}, 100_000):
        if item["name"] == ident:
            return str(item["id"])
    raise ApiError(f"no {what} with id or name {ident!r}")


def resolve_case(api: Api, ident: str) -> str:
    return resolve(api, "/api/v1/test-cases", "test case", ident)


# ---- submit and follow ---------------------------------------------------------------------------

Wait = Annotated[bool, typer.Option("--wait", help="follow it live; exit 0 if PASSED, 1 if not")]
Junit = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        dir_okay=False,
        show_default=False,
        help="when it has finished, write its JUnit XML report to this file (implies --wait)",
    ),
]
MAX_BATCH = 500  # api/schemas.py: items per POST /executions/batch
PriorityOption = Annotated[Priority, typer.Option(case_sensitive=False, help="queue priority")]
RunId = Annotated[str | None, typer.Option(help="group executions of one run (e.g. a CI build)")]
Trigger = Annotated[str, typer.Option(help="trigger kind: api, ci or manual")]
IdempotencyKey = Annotated[
    str | None, typer.Option(help="repeat-safe submit: the same key returns the first execution")
]


@submit_app.command("case")
def submit_case(
    case: Annotated[str, typer.Argument(help="test case id (or exact name)")],
    priority: PriorityOption = Priority.NORMAL,
    run_id: RunId = None,
    trigger: Trigger = "api",
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
    junit: Junit = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run one test case. Prints the execution id, or with --wait follows it live to the end."""
    check_junit_target(junit)
    api = make_api(api_url, token)
    with exit_on_api_error():
        body = {"test_case_id": resolve_case(api, case), **case_options(priority, trigger, run_id)}
        execution = api.call(
            "POST", "/api/v1/executions/case", body=body, headers=idempotency(idempotency_key)
        )
        if not (wait or junit):
            typer.echo(execution["id"])
            return
        from anvil.follow import follow_case

        final = follow_case(api, execution, out=console())
    finish(api, final, junit)


@submit_app.command("cases")
def submit_cases(
    cases: Annotated[list[str], typer.Argument(help="test case ids (or exact names); one execution each")],
    priority: PriorityOption = Priority.NORMAL,
    run_id: RunId = None,
    trigger: Trigger = "api",
    idempotency_key: IdempotencyKey = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run several test cases in one request (all or none). Prints the execution ids in order.

    Each becomes its own execution, as with `submit case`; to follow many together, make a suite.
    """
    if len(cases) > MAX_BATCH:
        raise typer.BadParameter(f"at most {MAX_BATCH} cases per request", param_hint="CASES")
    api = make_api(api_url, token)
    with exit_on_api_error():
        common = case_options(priority, trigger, run_id)
        items = [{"test_case_id": resolve_case(api, case), **common} for case in cases]
        batch = api.call(
            "POST", "/api/v1/executions/batch", body={"items": items}, headers=idempotency(idempotency_key)
        )
    for execution in batch["items"]:
        typer.echo(execution["id"])


def case_options(priority: Priority, trigger: str, run_id: str | None) -> dict[str, Any]:
    """What a case submission says besides the case (the same for one case or a batch)."""
    options: dict[str, Any] = {"priority": priority.value, "trigger_kind": trigger}
    if run_id:
        options["run_id"] = run_id
    return options


def idempotency(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


def check_junit_target(path: Path | None) -> None:
    """Refuse a report path that cannot be written before anything runs (exit 2)."""
    if path is not None and not path.parent.is_dir():
        raise typer.BadParameter(f"directory {path.parent} does not exist", param_hint="--junit")


def finish(api: Api, final: dict[str, Any], junit: Path | None) -> None:
    """Write the JUnit report if asked (also when it did not pass), then exit 0 if PASSED, else 1."""
    if junit is not None:
        with exit_on_api_error():
            report = api.download(f"/api/v1/executions/{final['id']}/junit.xml")
        try:
            junit.write_bytes(report)
        except OSError as exc:
            typer.echo(f"error: cannot write {junit}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from exc
        console().print(f"JUnit report {escape(str(junit))} ({junit_counts(report)})")
    raise typer.Exit(0 if final["status"] == Status.PASSED else 1)


def junit_counts(report: bytes) -> str:
    try:
        root = ElementTree.fromstring(report)
    except ElementTree.ParseError:
        return "not valid XML"
    counts = {key: root.get(key, "0") for key in ("tests", "failures", "errors", "skipped")}
    return ", ".join(f"{value} {key}" for key, value in counts.items())


STATUS_STYLE = {
    "PASSED": "bold green",
    "FAILED": "bold red",
    "ERROR": "bold red",
    "TIMEOUT": "bold red",
    "ABORTED": "bold red",
    "RUNNING": "bold cyan",
    "RETRYING": "yellow",
    "CANCELLED": "yellow",
    "passed": "green",
    "failed": "red",
    "error": "red",
    "timeout": "red",
    "skipped": "yellow",
    "cancelled": "yellow",
}


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def step_line(step: dict[str, Any]) -> str:
    """One step result, with its error and the tail of its output when it did not pass."""
    duration = f" {step['duration_s']:.2f}s" if step.get("duration_s") is not None else ""
    name = f"{step['keyword']} {step['name']}" if step.get("keyword") else step["name"]
    line = f"    step {step['seq']} {styled(step['status'])}{duration}  {escape(name)}"
    if step.get("error") and step["status"] != "skipped":
        error = str(step["error"])
        line += "".join(f"\n      {escape(text)}" for text in error.splitlines())
        output = (step.get("output") or "").strip()
        tail = output.splitlines()[-10:] if output != error.strip() else []
        line += "".join(f"\n      | {escape(text)}" for text in tail)
    return line


def result_line(execution: dict[str, Any]) -> str:
    line = f"{styled(execution['status'])}"
    if execution.get("duration_s") is not None:
        line += f" in {execution['duration_s']:.2f}s"
    counts = counts_text(execution.get("summary") or {})
    if counts:
        line += f" ({counts})"
    if execution.get("error"):
        line += f"\n  {escape(execution['error'])}"
    return line


def counts_text(summary: dict[str, Any]) -> str:
    total = summary.get("total")
    # Counts only: a runner may add details of its own (e.g. pytest's exit code and its counts).
    parts = [f"{v} {k}" for k, v in summary.items() if k != "total" and isinstance(v, int)]
    return f"{total} steps: " + ", ".join(parts) if total is not None else ", ".join(parts)


# ---- status --------------------------------------------------------------------------------------


@app.command()
def status(
    execution_id: Annotated[str, typer.Argument(help="execution id")],
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
        if execution.get("progress") is not None
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
    if progress:  # a suite: members, not steps
        by_status = ", ".join(f"{n} {status}" for status, n in progress["by_status"].items())
        return f"{progress['done']} of {progress['total']} members done ({by_status})"
    return counts_text(execution.get("summary") or {}) or None
