"""Following an execution live over its Server-Sent Events stream (`anvil submit … --wait`).

GET /api/v1/executions/{id}/events sends ``id: <seq>``, ``event: transition|step`` and
``data: <json>`` per event, then a last ``event: end`` without an id. A dropped connection, a
restarting API or a 503 is ridden out for up to RECONNECT_GRACE_S: the client reconnects with
Last-Event-ID and the server replays exactly what it missed, so nothing is shown twice.

A case is shown step by step and followed through its retries (each a new execution in the same
tree) to the attempt whose result counts. A suite is shown as a progress bar (members done of
total, failures so far) with a line per finished member, and its failing members at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from anvil.client import _pages, result_line, step_line, styled
from anvil.domain.states import FINISHED, RETRYABLE, Status
from anvil.http_client import Api, ApiError

# Without an event or a keep-alive from the API for this long, give up.
RECONNECT_GRACE_S = 15.0
# The server sends a keep-alive comment every 15 s while nothing happens.
READ_TIMEOUT_S = 45.0
# Reconnection delay when the server did not say (``retry:``), and the most we wait between tries.
DEFAULT_RETRY_MS = 1000
MAX_RETRY_MS = 3000
FAILURES = frozenset({Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.ABORTED})
NOT_PASSED = (*sorted(FAILURES), Status.CANCELLED)
# At most this many failing members are listed at the end (with their errors).
LIST_FAILING = 50


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            raise ApiError(f"the event stream sent a {self.event!r} event that is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ApiError(f"the event stream sent a {self.event!r} event that is not a JSON object")
        return value


@dataclass
class SseParser:
    """The text/event-stream format (HTML Living Standard, "server-sent events"), one line at a time.

    Fields are ``name: value`` (one optional space after the colon); several ``data`` lines join with
    newlines; a blank line dispatches the event; lines starting with ``:`` are comments (keep-alives);
    ``id`` persists across events and is what a reconnect sends as Last-Event-ID; ``retry`` is the
    reconnection delay in milliseconds. Unknown fields are ignored.
    """

    last_event_id: str = ""
    retry_ms: int | None = None
    _data: list[str] = field(default_factory=list)
    _event: str = ""

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its line break); returns the event a blank line completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def reset(self) -> None:
        """A new connection: an event cut off by the old one is dropped (the server sends it again)."""
        self._data, self._event = [], ""

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self.reset()
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self.last_event_id or None)


def event_stream(api: Api, execution_id: str, *, grace_s: float = RECONNECT_GRACE_S) -> Iterator[SseEvent]:
    """Every event of the execution's stream, in order and each once, up to and including ``end``.

    Reconnects with Last-Event-ID after a dropped connection or a retryable error (503, API
    unreachable) until ``grace_s`` passed without hearing from the API; then raises ApiError.
    """
    parser = SseParser()
    path = f"/api/v1/executions/{execution_id}/events"
    trouble_since: float | None = None
    while True:
        headers = {"Accept": "text/event-stream"}
        if parser.last_event_id:
            headers["Last-Event-ID"] = parser.last_event_id
        parser.reset()
        try:
            with api.stream(path, headers=headers, read_timeout_s=READ_TIMEOUT_S) as response:
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is not None or line.startswith(":"):
                        trouble_since = None  # news or a keep-alive: the stream works again
                    if event is not None:
                        yield event
                        if event.event == "end":
                            return
            problem = "the event stream ended before the execution finished"
        except ApiError as exc:
            if not exc.retryable:
                raise
            problem = str(exc)
        now = time.monotonic()
        trouble_since = trouble_since or now
        if now - trouble_since > grace_s:
            raise ApiError(f"lost the live events of execution {execution_id} for {grace_s:g}s: {problem}")
        time.sleep(min(parser.retry_ms or DEFAULT_RETRY_MS, MAX_RETRY_MS) / 1000)


# ---- a case ---------------------------------------------------------------------------------------


def follow_case(api: Api, execution: dict[str, Any], *, out: Console) -> dict[str, Any]:
    """Print a case execution's status changes and step results until it and its retries end.

    Returns the last execution of its retry chain: its result is the case's.
    """
    head = str(execution["id"])
    out.print(f"execution [bold]{head}[/]")
    for event in event_stream(api, head):
        if event.event not in ("transition", "step"):
            continue
        data = event.json()
        target = str(data.get("execution_id"))
        if target != head:
            # Another execution of the tree: shown only when it is the retry of the current one.
            if (
                event.event != "transition"
                or data.get("from") is not None
                or not _retry_of(api, target, head)
            ):
                continue
            head = target
            out.print(f"  retry: execution [bold]{head}[/]")
        if event.event == "transition":
            out.print(transition_line(data, priority=str(execution["priority"])))
        else:
            out.print(step_line(_with_output(api, data)))
    final: dict[str, Any] = api.call("GET", f"/api/v1/executions/{head}")
    out.print(result_line(final))
    return final


def _retry_of(api: Api, candidate: str, head: str) -> bool:
    execution = api.call("GET", f"/api/v1/executions/{candidate}")
    return bool(
        str(execution.get("parent_execution_id")) == head and execution["trigger_kind"] in ("retry", "repair")
    )


def _with_output(api: Api, step: dict[str, Any]) -> dict[str, Any]:
    """A failing step's event with its output (events leave output out; the steps endpoint has it)."""
    if not step.get("error") or step.get("status") == "skipped":
        return step
    recorded = api.call(
        "GET", f"/api/v1/executions/{step['execution_id']}/steps", params={"attempt": step["attempt"]}
    )
    match = next((s for s in recorded if s["seq"] == step["seq"]), None)
    return {**step, "output": match.get("output")} if match else step


def transition_line(data: dict[str, Any], *, priority: str) -> str:
    status, actor = str(data["to"]), str(data.get("actor") or "")
    line = f"  {styled(status)}"
    if status == Status.QUEUED and data.get("from") is None:
        line += f" (priority {priority})"
    if status == Status.RUNNING and actor.startswith("worker:"):
        line += f" attempt {data['attempt']} on {escape(actor.removeprefix('worker:'))}"
    reason = data.get("reason")
    # A result's reason is its error, which the result line shows.
    if reason and reason not in ("submitted", "claimed") and status not in RETRYABLE | {Status.PASSED}:
        line += f" [dim]({escape(str(reason))})[/]"
    return line


# ---- a suite --------------------------------------------------------------------------------------


@dataclass
class SuiteTally:
    """Progress of a suite from its members' transitions: the latest status of each execution.

    A RETRYING member is not done: its retry (a new execution of the tree) is the same member and
    counts once it finishes. ``done`` never exceeds ``total`` (a person's extra run in the tree).
    """

    total: int
    statuses: dict[str, str] = field(default_factory=dict)

    def record(self, execution_id: str, status: str) -> None:
        self.statuses[execution_id] = status

    @property
    def done(self) -> int:
        finished = sum(s in FINISHED and s != Status.RETRYING for s in self.statuses.values())
        return min(self.total, finished)

    @property
    def failures(self) -> int:
        return sum(s in FAILURES for s in self.statuses.values())


def follow_suite(api: Api, execution: dict[str, Any], *, out: Console) -> dict[str, Any]:
    """Show a suite execution's progress until every member has finished; returns the suite execution."""
    suite_id = str(execution["id"])
    name = str(execution.get("test_case_name") or "suite")
    tally = SuiteTally(
        total=int((execution.get("progress") or execution.get("summary") or {}).get("total", 0))
    )
    names = {
        str(m["id"]): str(m.get("test_case_name") or m["id"])
        for m in _pages(api, "/api/v1/executions", {"parent_execution_id": suite_id}, max(tally.total, 1))
    }
    out.print(f"suite execution [bold]{suite_id}[/] ({escape(name)}, {tally.total} members)")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failures: {task.fields[failures]}"),
        TimeElapsedColumn(),
    )
    # A member's failure is shown once the next event proves it is not retried (the retry is
    # decided in the same transaction, so its RETRYING event comes right after).
    held: tuple[str, str] | None = None
    with Progress(*columns, console=out, disable=not out.is_terminal) as bar:
        task = bar.add_task(escape(name), total=tally.total, failures=0)
        for event in event_stream(api, suite_id):
            data = event.json() if event.event == "transition" else {}
            member, status = str(data.get("execution_id")), str(data.get("to"))
            if held is not None and not (member == held[0] and status == Status.RETRYING):
                out.print(held[1])
            held = None
            if event.event != "transition":
                continue
            if member == suite_id:
                out.print(transition_line(data, priority=str(execution["priority"])))
                continue
            if member not in names:  # a retry: a new execution of a member
                names[member] = str(api.call("GET", f"/api/v1/executions/{member}").get("test_case_name"))
            tally.record(member, status)
            bar.update(task, completed=tally.done, failures=tally.failures, refresh=True)
            line = f"  [{tally.done}/{tally.total}] {styled(status)}  {escape(names[member])}"
            if status == Status.RETRYING:
                out.print(
                    f"  {styled(status)}  {escape(names[member])} [dim]({escape(str(data.get('reason')))})[/]"
                )
            elif status in RETRYABLE:
                held = (member, line)
            elif status in FINISHED:
                out.print(line)
        if held is not None:
            out.print(held[1])
    final: dict[str, Any] = api.call("GET", f"/api/v1/executions/{suite_id}")
    out.print(suite_result_line(final))
    if final["status"] != Status.PASSED:
        _print_failing(api, final, out=out)
    return final


def suite_result_line(execution: dict[str, Any]) -> str:
    progress = execution.get("progress") or {}
    line = styled(execution["status"])
    if execution.get("duration_s") is not None:
        line += f" in {execution['duration_s']:.2f}s"
    by_status = ", ".join(f"{n} {status}" for status, n in (progress.get("by_status") or {}).items())
    return line + f" ({progress.get('total', '?')} members: {by_status})"


def _print_failing(api: Api, suite: dict[str, Any], *, out: Console) -> None:
    """The members whose result is not a pass, with their errors (latest attempts only)."""
    filters = {"correlation_id": suite["correlation_id"], "status": ",".join(NOT_PASSED)}
    failing = [
        m
        for m in _pages(api, "/api/v1/executions", filters, 100_000)
        if str(m.get("root_execution_id")) == str(suite["id"]) and str(m["id"]) != str(suite["id"])
    ]
    if not failing:
        return
    out.print("failing members:")
    for member in failing[:LIST_FAILING]:
        out.print(f"  {styled(member['status'])}  {escape(str(member['test_case_name']))}  {member['id']}")
        if member.get("error"):
            out.print(f"      {escape(str(member['error']).splitlines()[0])}")
    if len(failing) > LIST_FAILING:
        out.print(f"  … and {len(failing) - LIST_FAILING} more")
