"""`anvil tests quarantine|release|quarantined|audit`: quarantine of tests over the API.

A test is named by its id, or by its key (a pytest node id, ``feature::scenario`` for BDD, the case
name for generic and manual cases), with ``--case`` when several cases have a test of that key.
Like every client command: ANVIL_API_URL and ANVIL_TOKEN (or --api-url/--token); exit code 0
done, 2 usage or API error.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.http import Api, ApiError, exit_on_api_error, make_api
from anvil.cli.lookup import pages
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console

app = typer.Typer(help="Tests: quarantine and its audit (over the API).", no_args_is_help=True)

TestArg = Annotated[
    str, typer.Argument(help="test id, or its key (pytest node id, feature::scenario, case name)")
]
CaseOption = Annotated[
    str | None, typer.Option("--case", help="the case (name or id) the test key belongs to")
]
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([hdw])")
_DAYS = {"h": 1 / 24, "d": 1.0, "w": 7.0}


def expiry_body(text: str) -> dict[str, Any]:
    """``7d`` / ``12h`` / ``2w`` -> expires_in_days; an ISO date or time -> expires_at."""
    match = _SPAN.fullmatch(text.strip().lower())
    if match:
        return {"expires_in_days": float(match.group(1)) * _DAYS[match.group(2)]}
    try:
        return {"expires_at": datetime.fromisoformat(text.strip()).isoformat()}
    except ValueError:
        raise ApiError(f"--expires {text!r}: give a span like 7d, 12h or 2w, or an ISO date/time") from None


def resolve_test(api: Api, ident: str, case: str | None) -> str:
    """A test id given as a UUID, or found by its exact key (or name) through GET /api/v1/tests."""
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        pass
    # The listing searches at most 200 characters; a longer key still contains them.
    found = list(pages(api, "/api/v1/tests", {"case": case, "search": ident[:200]}, 1000))
    for field in ("key", "name"):
        exact = [t for t in found if t.get(field) == ident]
        if len(exact) == 1:
            return str(exact[0]["id"])
        if len(exact) > 1:
            cases = ", ".join(sorted({_case_of(t) for t in exact}))
            raise ApiError(
                f"{len(exact)} tests have the {field} {ident!r} (cases {cases}); give --case or the id"
            )
    where = f" in case {case}" if case else ""
    raise ApiError(f"no test with id or key {ident!r}{where}")


@app.command("quarantine")
def tests_quarantine(
    test: TestArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (required; kept in the audit)")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="ends by itself: a span (7d, 12h, 2w) or an ISO date/time")
    ] = None,
    case: CaseOption = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Quarantine a test (maintainer or admin): it runs, but its failure fails nothing.

    On a test already quarantined, updates the reason and the expiry.
    """
    with exit_on_api_error():
        api = make_api(api_url, token)
        body = {"reason": reason, **(expiry_body(expires) if expires else {})}
        state = api.call("POST", f"/api/v1/tests/{resolve_test(api, test, case)}/quarantine", body=body)
    _print_state(state, as_json)


@app.command("release")
def tests_release(
    test: TestArg,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="why (kept in the audit)")] = None,
    case: CaseOption = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Lift a test's quarantine (maintainer or admin)."""
    with exit_on_api_error():
        api = make_api(api_url, token)
        body = {"reason": reason} if reason else None
        state = api.call("DELETE", f"/api/v1/tests/{resolve_test(api, test, case)}/quarantine", body=body)
    _print_state(state, as_json)


@app.command("quarantined")
def tests_quarantined(
    case: Annotated[str | None, typer.Option("--case", help="only tests of this case (name or id)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 200,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List the tests under quarantine now."""
    with exit_on_api_error():
        api = make_api(api_url, token)
        found = list(pages(api, "/api/v1/tests", {"case": case, "quarantined": "true"}, limit))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table("id", "test", "case", "since", "by", "expires", "reason", box=None, pad_edge=False)
    for test in found:
        table.add_row(
            str(test["id"]),
            escape(test["key"]),
            escape(_case_of(test)),
            _when(test.get("quarantined_at")),
            escape(test.get("quarantined_by") or ""),
            _when(test.get("quarantine_expires_at")) or "never",
            escape(test.get("quarantine_reason") or ""),
        )
    out = console()
    out.print(table) if found else out.print("no quarantined tests")


@app.command("audit")
def tests_audit(
    test: TestArg,
    case: CaseOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many events")] = 100,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Who quarantined or released a test, when and why (newest first)."""
    with exit_on_api_error():
        api = make_api(api_url, token)
        test_id = resolve_test(api, test, case)
        found = list(pages(api, f"/api/v1/tests/{test_id}/quarantine/events", {}, limit))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table("at", "action", "by", "expires", "reason", box=None, pad_edge=False)
    for event in found:
        table.add_row(
            _when(event["at"]),
            event["action"],
            escape(event["actor"]),
            _when(event.get("expires_at")),
            escape(event.get("reason") or ""),
        )
    out = console()
    out.print(table) if found else out.print(f"no quarantine changes for test {test_id}")


def _print_state(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    out = console()
    name = escape(state["key"])
    if not state["quarantined"]:
        out.print(f"{state['id']}  {name}: not quarantined")
        return
    expires = state.get("quarantine_expires_at")
    until = f" until {_when(expires)}" if expires else ""
    out.print(f"{state['id']}  {name}: [yellow]quarantined[/]{until} by {escape(state['quarantined_by'])}")
    out.print(f"  reason: {escape(state['quarantine_reason'])}")


def _case_of(test: dict[str, Any]) -> str:
    return str(test.get("case_name") or test.get("test_case_id") or "")


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value
