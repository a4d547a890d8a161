"""How the client commands print: a console fit for terminals and logs, statuses in colour, steps."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape


def console() -> Console:
    # Wide when piped, so ids and names are never wrapped or cut in logs and scripts.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


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
