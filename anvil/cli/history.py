"""`anvil history show`: how a test (or every test of a case) ended, run after run.

Like every client command: ANVIL_API_URL and ANVIL_TOKEN (or --api-url/--token); exit code 0
done, 2 usage or API error.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import Api, ApiError, exit_on_api_error, make_api
from anvil.cli.lookup import pages
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console, styled

app = typer.Typer(help="Test history: how tests ended, run after run.", no_args_is_help=True)

MARK = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "error": "[red]E[/]", "skipped": "[yellow]-[/]"}
MAX_RECENT = 50  # what GET /api/v1/tests?recent= allows


@app.command("show")
def history_show(
    target: Annotated[
        str,
        typer.Argument(
            help="a test case (name or id): its tests and their last runs; or a test (id, or its key "
            "such as tests/test_app.py::test_login): its results",
            show_default=False,
        ),
    ],
    limit: Annotated[int, typer.Option(min=1, help="runs to show (per test, for a case: at most 50)")] = 20,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Show the history of a test, or of every test of a case, newest run first.

    \b
      anvil history show checkout-tests            # each test of the case, its last 20 runs
      anvil history show 'tests/test_cart.py::test_total' --limit 50
      anvil history show 3f6c...-...  --json       # a test id (or a case id)
    """
    api = make_api(api_url, token)
    with exit_on_api_error():
        test = find_test(api, target)
        if test is None:
            tests = list(
                pages(api, "/api/v1/tests", {"case": target, "recent": min(limit, MAX_RECENT)}, 100_000)
            )
            show_case(target, tests, as_json)
            return
        results = list(pages(api, f"/api/v1/tests/{test['id']}/history", {}, limit))
    show_test(test, results, as_json)


def find_test(api: Api, target: str) -> dict[str, Any] | None:
    """The test ``target`` names (an id or a key), or None when it names a case."""
    try:
        uuid.UUID(target)
    except ValueError:
        pass
    else:
        try:
            return dict(api.call("GET", f"/api/v1/tests/{target}"))
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None  # a case id, then
    try:
        api.call("GET", "/api/v1/tests", params={"case": target, "limit": 1})
        return None  # a case of that name
    except ApiError as exc:
        if exc.status != 404:
            raise
    found = [
        t for t in pages(api, "/api/v1/tests", {"search": target}, 1000) if target in (t["key"], t["name"])
    ]
    if not found:
        raise ApiError(f"no test case and no test with id, name or key {target!r}")
    if len(found) > 1:
        cases = ", ".join(f"{t['id']} (case {t['case_name']})" for t in found)
        raise ApiError(f"{len(found)} tests have the key {target!r}; give one's id: {cases}")
    return found[0]


def show_test(test: dict[str, Any], results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"test": test, "history": results}, indent=2))
        return
    out = console()
    out.print(f"[bold]{escape(test['key'])}[/]  (case {escape(str(test.get('case_name')))}, {test['kind']})")
    if test.get("quarantined"):
        out.print(f"quarantined by {test['quarantined_by']}: {escape(str(test['quarantine_reason']))}")
    flaky = test.get("flaky") or {}
    for evidence in flaky.get("evidence", []):
        out.print(f"[yellow]flaky[/] ({flaky['window']['label']}): {escape(evidence['summary'])}")
    table = Table(
        "recorded", "status", "duration", "revision", "branch", "execution", box=None, pad_edge=False
    )
    for r in results:
        status = styled(r["status"]) + (f" ({r['detail']})" if r.get("detail") else "")
        if r.get("flaky_retry"):
            status += " [yellow](retry)[/]"
        table.add_row(
            r["recorded_at"][:19].replace("T", " "),
            status,
            f"{r['duration_s']:.2f}s" if r.get("duration_s") is not None else "",
            escape(r.get("revision") or ""),
            escape(r.get("branch") or ""),
            r["execution_id"],
        )
    out.print(table) if results else out.print("no results yet")


def show_case(target: str, tests: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"case": target, "tests": tests}, indent=2))
        return
    out = console()
    if not tests:
        out.print(f"case {escape(target)} has no recorded tests yet")
        return
    table = Table("test", "last", "runs (oldest → newest)", "failed", "id", box=None, pad_edge=False)
    for t in tests:
        recent = list(reversed(t.get("recent") or []))
        failures = sum(r["status"] in ("failed", "error") for r in recent)
        name = escape(t["key"]) + (" [yellow](quarantined)[/]" if t.get("quarantined") else "")
        table.add_row(
            name,
            styled(t["last_status"] or ""),
            "".join(MARK.get(r["status"], "?") for r in recent),
            f"{failures}/{len(recent)}",
            t["id"],
        )
    out.print(table)
