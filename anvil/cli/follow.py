"""Following an execution live over its Server-Sent Events stream (`anvil submit … --wait`).

The stream (anvil/cli/sse.py) rides out dropped connections and restarting APIs without showing an
event twice.

A case is shown step by step and followed through its retries (each a new execution in the same
tree) to the attempt whose result counts. A suite is shown as a progress bar (members done of
total, failures so far) with a line per finished member, and its failing members at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from anvil.cli.http import Api
from anvil.cli.lookup import pages
from anvil.cli.output import result_line, step_line, styled
from anvil.cli.sse import event_stream
from anvil.domain.states import FINISHED, RETRYABLE, Status

FAILURES = frozenset({Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.ABORTED})
NOT_PASSED = (*sorted(FAILURES), Status.CANCELLED)
# At most this many failing members are listed at the end (with their errors).
LIST_FAILING = 50


# ---- a case ---------------------------------------------------------------------------------------


def follow_case(api: Api, execution: dict[str, Any], *, out: Console) -> dict[str, Any]:
    """Print a case execution's status changes and step results until it and its retries end.

    Returns the last execution of its retry chain: its result is the case's.
    """
    head = str(execution["id"])
    out.print(f"execution [bold]{head}[/]")
    shards: dict[str, str] = {}  # the shards of a split run: execution id -> "shard i/n"
    for event in event_stream(api, head):
        if event.event not in ("transition", "step"):
            continue
        data = event.json()
        target = str(data.get("execution_id"))
        if target in shards:
            # A shard's steps and its end are the run's; its own queueing and start are noise.
            if event.event == "step":
                out.print(f"  [dim]{shards[target]}[/] " + step_line(_with_output(api, data)).lstrip())
            elif data.get("to") not in ("QUEUED", "RUNNING", "SCHEDULED"):
                out.print(f"  [dim]{shards[target]}[/] " + transition_line(data, priority="").lstrip())
            continue
        if target != head:
            new = event.event == "transition" and data.get("from") is None
            label = _shard_of(api, target, head, shards) if new else None
            if label is not None:
                shards[target] = label
                continue
            # Another execution of the tree: shown only when it is the retry of the current one.
            if not new or not _retry_of(api, target, head):
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


def _shard_of(api: Api, candidate: str, head: str, shards: dict[str, str]) -> str | None:
    """ "shard i/n" when ``candidate`` is a shard of ``head`` (or the retry of one)."""
    execution = api.call("GET", f"/api/v1/executions/{candidate}")
    parent, kind = str(execution.get("parent_execution_id")), execution["trigger_kind"]
    if parent in shards and kind in ("retry", "repair"):
        return f"{shards[parent]} {kind}"
    shard = (execution.get("selection") or {}).get("shard")
    if parent != head or kind != "shard" or not shard:
        return None
    return f"shard {shard['index']}/{shard['of']}"


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
        for m in pages(api, "/api/v1/executions", {"parent_execution_id": suite_id}, max(tally.total, 1))
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
        for m in pages(api, "/api/v1/executions", filters, 100_000)
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
