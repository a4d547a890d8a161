"""`anvil stats show|flaky-tests|slowest`: statistics of test results over a window and scope.

The window is ``--window 30d`` (or 12h, 2w) or ``--runs N`` (the last N runs in scope); by default
the server's ANVIL_FLAKY_WINDOW_DAYS. The scope is any of ``--case`` and ``--suite`` (names or ids,
repeatable), ``--tag`` and ``--branch``; none: every case. Exit code 0 done, 2 usage or API error.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import exit_on_api_error, make_api
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console

app = typer.Typer(
    help="Statistics of test results: rates, durations, flaky and slow tests.", no_args_is_help=True
)

Case = Annotated[list[str] | None, typer.Option("--case", help="a test case (name or id); repeatable")]
Suite = Annotated[list[str] | None, typer.Option("--suite", help="a test suite's member cases; repeatable")]
Tag = Annotated[str | None, typer.Option(help="only cases with this tag")]
Branch = Annotated[str | None, typer.Option(help="only runs submitted on this branch")]
WindowOption = Annotated[str | None, typer.Option("--window", help="a span before now: 30d, 12h, 2w")]
Runs = Annotated[int | None, typer.Option("--runs", min=1, help="instead of --window: the last N runs")]


def _params(
    case: list[str] | None,
    suite: list[str] | None,
    tag: str | None,
    branch: str | None,
    window: str | None,
    runs: int | None,
) -> dict[str, Any]:
    found = {
        "case": case or None,
        "suite": suite or None,
        "tag": tag,
        "branch": branch,
        "window": window,
        "runs": runs,
    }
    return {k: v for k, v in found.items() if v is not None}


def _rate(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.3f}s" if value is not None else "-"


def _heading(found: dict[str, Any]) -> str:
    scope = found["scope"]
    where = "every case" if scope["case_ids"] is None else f"{len(scope['case_ids'])} case(s)"
    if scope.get("tag"):
        where += f" tagged {scope['tag']}"
    if scope.get("branch"):
        where += f" on {scope['branch']}"
    return f"[bold]{escape(where)}[/], window {escape(found['window']['label'])}"


@app.command("show")
def stats_show(
    case: Case = None,
    suite: Suite = None,
    tag: Tag = None,
    branch: Branch = None,
    window: WindowOption = None,
    runs: Runs = None,
    top: Annotated[
        int, typer.Option(min=1, max=100, help="length of the slowest and most-failing lists")
    ] = 5,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Runs, pass/failure/flaky rates, duration p50/p95, slowest and most-failing tests, a per-day trend.

    \b
      anvil stats show --case checkout --window 7d
      anvil stats show --suite nightly --branch main --json
    """
    params = {**_params(case, suite, tag, branch, window, runs), "top": top}
    with exit_on_api_error():
        found = make_api(api_url, token).call("GET", "/api/v1/stats", params=params)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    out = console()
    out.print(_heading(found))
    out.print(
        f"runs {found['runs']}  tests {found['tests']}  results {found['results']} "
        f"(passed {found['passed']}, failed {found['failed']}, "
        f"error {found['error']}, skipped {found['skipped']})"
    )
    out.print(
        f"pass rate {_rate(found['pass_rate'])}  failure rate {_rate(found['failure_rate'])}  "
        f"flaky {found['flaky_tests']} ({_rate(found['flaky_rate'])} of tests)  "
        f"duration p50 {_seconds(found['duration_p50_s'])}  p95 {_seconds(found['duration_p95_s'])}"
    )
    if found["most_failing"]:
        table = Table("most failing", "failures", "rate", box=None, pad_edge=False, title_justify="left")
        for f in found["most_failing"]:
            table.add_row(escape(f["key"]), f"{f['failures']}/{f['runs']}", _rate(f["failure_rate"]))
        out.print(table)
    if found["slowest"]:
        out.print(_figures("slowest", found["slowest"]))
    if found["trend"]:
        table = Table("day", "passed", "failed", "error", "skipped", box=None, pad_edge=False)
        for d in found["trend"]:
            table.add_row(d["day"], str(d["passed"]), str(d["failed"]), str(d["error"]), str(d["skipped"]))
        out.print(table)


@app.command("flaky-tests")
def stats_flaky(
    case: Case = None,
    suite: Suite = None,
    tag: Tag = None,
    branch: Branch = None,
    window: WindowOption = None,
    runs: Runs = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The flaky tests, strongest evidence first, each with its evidence and the executions it cites.

    Flaky: passed and failed on one revision; passed on a retry; or flips at the server's flip rate.
    """
    with exit_on_api_error():
        found = make_api(api_url, token).call(
            "GET", "/api/v1/stats/flaky-tests", params=_params(case, suite, tag, branch, window, runs)
        )
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    out = console()
    out.print(_heading(found))
    if not found["items"]:
        out.print("no flaky tests")
        return
    for item in found["items"]:
        quarantined = " [yellow](quarantined)[/]" if item["quarantined"] else ""
        out.print(
            f"\n[bold]{escape(item['key'])}[/]{quarantined}  case {escape(str(item['case_name']))}  "
            f"failed {item['failures']} of {item['runs']}  id {item['test_id']}"
        )
        for evidence in item["evidence"]:
            out.print(f"  [yellow]{evidence['kind']}[/]: {escape(evidence['summary'])}")
            for seen in evidence["executions"]:
                at = seen["recorded_at"][:19].replace("T", " ")
                out.print(f"    {seen['execution_id']}  {seen['status']:<7}  {at}")


@app.command("slowest")
def stats_slowest(
    limit: Annotated[int, typer.Option(min=1, max=200, help="at most this many tests")] = 20,
    case: Case = None,
    suite: Suite = None,
    tag: Tag = None,
    branch: Branch = None,
    window: WindowOption = None,
    runs: Runs = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The tests with the longest mean duration in the window, slowest first."""
    params = {**_params(case, suite, tag, branch, window, runs), "limit": limit}
    with exit_on_api_error():
        found = make_api(api_url, token).call("GET", "/api/v1/stats/slowest", params=params)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    out = console()
    out.print(_heading(found))
    out.print(_figures("test", found["items"])) if found["items"] else out.print("no timed results")


def _figures(title: str, figures: list[dict[str, Any]]) -> Table:
    table = Table(title, "mean", "max", "runs", "id", box=None, pad_edge=False)
    for f in figures:
        table.add_row(
            escape(f["key"]), _seconds(f["mean_s"]), _seconds(f["max_s"]), str(f["runs"]), f["test_id"]
        )
    return table
