"""`anvil webhooks create|list|show|update|delete|test|redeliver`: notifications over the API.

A subscription POSTs events (a run finished, a test found flaky, a quarantine changed) to a URL,
signed per the Standard Webhooks spec; ``--format slack`` or ``teams`` sends a readable message to
that chat's incoming webhook instead of the JSON event. Maintainer or admin.
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
    help="Webhooks and chat notifications: runs finished, flaky tests, quarantines (over the API).",
    no_args_is_help=True,
)
EVENT_HELP = "execution.finished, test.flaky_detected or test.quarantine_changed; repeat for several"


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _filters(
    case: list[str] | None,
    suite: list[str] | None,
    schedule: list[str] | None,
    status: list[str] | None,
    only_changes: bool | None,
) -> dict[str, Any]:
    given = {"cases": case, "suites": suite, "schedules": schedule, "statuses": status}
    body: dict[str, Any] = {k: v for k, v in given.items() if v}
    if only_changes is not None:
        body["only_changes"] = only_changes
    return body


Cases = Annotated[
    list[str] | None, typer.Option("--case", help="only runs of this case (id or name); repeatable")
]
Suites = Annotated[
    list[str] | None, typer.Option("--suite", help="only runs of this suite (id or name); repeatable")
]
Schedules = Annotated[
    list[str] | None,
    typer.Option("--schedule", help="only runs this schedule fired (id or name); repeatable"),
]
Statuses = Annotated[
    list[str] | None, typer.Option("--status", help="only runs that ended so, e.g. FAILED; repeatable")
]
OnlyChanges = Annotated[
    bool | None,
    typer.Option(
        "--only-changes/--every-run",
        help="only when the result changed from the previous run (newly failing, fixed)",
    ),
]


@app.command("create")
def webhooks_create(
    url: Annotated[str, typer.Argument(help="where to POST, e.g. a Slack incoming-webhook URL")],
    event: Annotated[list[str], typer.Option("--event", help=EVENT_HELP)],
    fmt: Annotated[str, typer.Option("--format", help="standard (JSON event), slack or teams")] = "standard",
    name: Annotated[str | None, typer.Option(help="a label (default: the URL's host)")] = None,
    case: Cases = None,
    suite: Suites = None,
    schedule: Schedules = None,
    status: Statuses = None,
    only_changes: OnlyChanges = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Subscribe URL to events; prints the signing secret (only this once)."""
    body = {
        "url": url,
        "events": event,
        "format": fmt,
        **_filters(case, suite, schedule, status, only_changes),
    }
    if name:
        body["name"] = name
    with exit_on_api_error():
        created = make_api(api_url, token).call("POST", "/api/v1/webhooks", body=body)
    if as_json:
        typer.echo(json.dumps(created, indent=2))
        return
    typer.echo(
        f"created webhook {created['name']} ({created['id']}) for {', '.join(created['events'])}", err=True
    )
    typer.echo("its signing secret, shown only now (verify the webhook-signature header with it):", err=True)
    typer.echo(created["secret"])


@app.command("list")
def webhooks_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List subscriptions with their delivery counts."""
    with exit_on_api_error():
        items = make_api(api_url, token).call("GET", "/api/v1/webhooks")["items"]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "name", "url", "format", "events", "on", "sent", "waiting", "failed", box=None)
    for w in items:
        d = w["deliveries"]
        table.add_row(
            w["id"],
            escape(w["name"]),
            escape(w["url"]),
            w["format"],
            ", ".join(w["events"]),
            "yes" if w["enabled"] else "no",
            str(d["delivered"]),
            str(d["pending"]),
            str(d["failed"]),
        )
    console().print(table)


@app.command("show")
def webhooks_show(
    webhook_id: Annotated[str, typer.Argument(help="the subscription's id")],
    limit: Annotated[int, typer.Option(help="deliveries shown, newest first")] = 20,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A subscription and its delivery log (status code, latency, attempts)."""
    with exit_on_api_error():
        api = make_api(api_url, token)
        hook = api.call("GET", f"/api/v1/webhooks/{webhook_id}")
        log = api.call("GET", f"/api/v1/webhooks/{webhook_id}/deliveries", params={"limit": limit})["items"]
    if as_json:
        typer.echo(json.dumps({**hook, "log": log}, indent=2))
        return
    state = "enabled" if hook["enabled"] else "disabled"
    console().print(
        f"[bold]{escape(hook['name'])}[/] {hook['id']} ({state}) → {escape(hook['url'])} [{hook['format']}]"
    )
    console().print(f"events: {', '.join(hook['events'])}; filters: {json.dumps(hook['filters']) or '-'}")
    table = Table("delivery", "event", "status", "attempts", "code", "ms", "created", "error", box=None)
    for d in log:
        table.add_row(
            d["id"],
            d["event_type"],
            d["status"],
            str(d["attempts"]),
            str(d["last_status_code"] or "-"),
            str(d["last_latency_ms"] if d["last_latency_ms"] is not None else "-"),
            _when(d["created_at"]),
            escape((d["last_error"] or "")[:60]),
        )
    console().print(table)


@app.command("update")
def webhooks_update(
    webhook_id: Annotated[str, typer.Argument(help="the subscription's id")],
    url: Annotated[str | None, typer.Option(help="a new URL")] = None,
    event: Annotated[list[str] | None, typer.Option("--event", help=EVENT_HELP)] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="standard, slack or teams")] = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", help="send or hold deliveries")] = None,
    case: Cases = None,
    suite: Suites = None,
    schedule: Schedules = None,
    status: Statuses = None,
    only_changes: OnlyChanges = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Change a subscription; each filter given replaces that filter."""
    body: dict[str, Any] = _filters(case, suite, schedule, status, only_changes)
    for key, value in (("url", url), ("events", event), ("format", fmt), ("enabled", enable)):
        if value is not None:
            body[key] = value
    with exit_on_api_error():
        hook = make_api(api_url, token).call("PATCH", f"/api/v1/webhooks/{webhook_id}", body=body)
    typer.echo(f"updated webhook {hook['name']} ({hook['id']})")


@app.command("delete")
def webhooks_delete(
    webhook_id: Annotated[str, typer.Argument(help="the subscription's id")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Delete a subscription and its delivery log."""
    with exit_on_api_error():
        make_api(api_url, token).call("DELETE", f"/api/v1/webhooks/{webhook_id}")
    typer.echo(f"deleted webhook {webhook_id}")


@app.command("test")
def webhooks_test(
    webhook_id: Annotated[str, typer.Argument(help="the subscription's id")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Send a test event to one subscription (see the result with `anvil webhooks show`)."""
    with exit_on_api_error():
        queued = make_api(api_url, token).call("POST", f"/api/v1/webhooks/{webhook_id}/test")
    typer.echo(f"test event queued as delivery {queued['delivery_id']}")


@app.command("redeliver")
def webhooks_redeliver(
    webhook_id: Annotated[str, typer.Argument(help="the subscription's id")],
    delivery_id: Annotated[str, typer.Argument(help="the delivery's id (from `anvil webhooks show`)")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Send one delivery again now."""
    with exit_on_api_error():
        make_api(api_url, token).call(
            "POST", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
        )
    typer.echo(f"delivery {delivery_id} queued again")
