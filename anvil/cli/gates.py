"""A run's quality gate verdict as the client commands show it, and the exit code it decides.

The API stores the verdict on the run (``gate`` of a suite or case execution, null without a gate):
status passed or failed, the rules, what was measured, and each failed rule with its measured value
and limit.
"""

from __future__ import annotations

from typing import Any

from anvil.cli.http import Api
from anvil.domain.states import Status

# The order rules are shown in (the stored verdict's keys come back in JSONB's order).
RULES = ("max_failures", "min_pass_rate", "no_new_failures", "max_duration_s", "min_tests")


def verdict_of(api: Api, final: dict[str, Any]) -> dict[str, Any] | None:
    """The gate verdict of the run ``final`` ended: a case whose retry ended it keeps its verdict
    on the first execution of the chain (the root)."""
    if final.get("gate") is not None:
        return dict(final["gate"])
    root = final.get("root_execution_id")
    if root and str(root) != str(final["id"]):
        found = api.call("GET", f"/api/v1/executions/{root}").get("gate")
        return dict(found) if found is not None else None
    return None


def gate_summary(verdict: dict[str, Any] | None) -> str | None:
    """One line: "passed (max_failures, min_tests)" or "failed: max_failures 3 (limit 0)"."""
    if not verdict:
        return None
    if verdict["status"] == "passed":
        return f"passed ({rule_names(verdict)})"
    return "failed: " + "; ".join(rule_text(rule) for rule in verdict.get("failed_rules") or [])


def rule_names(verdict: dict[str, Any]) -> str:
    rules = verdict.get("rules") or {}
    return ", ".join(sorted(rules, key=lambda r: RULES.index(r) if r in RULES else len(RULES)))


def rule_text(rule: dict[str, Any]) -> str:
    measured = "none" if rule.get("measured") is None else f"{rule['measured']:g}"
    return f"{rule['rule']} {measured} (limit {rule['limit']:g})"


def gate_exit_code(verdict: dict[str, Any] | None, status: str) -> int:
    """With --gate: 0 when the gate passed, 1 when it failed; a run with no verdict (no gate, or it
    ended before it could be judged, e.g. cancelled) exits as without --gate, by its status."""
    if verdict is None:
        return 0 if status == Status.PASSED else 1
    return 0 if verdict["status"] == "passed" else 1
