"""behave run directly on a workspace: what Anvil's BDD results are compared with.

Its JSON report (``-f json``) gives every step's result; behave's JSON formatter omits the result of
steps it did not run (they count as skipped) and can misplace a scenario's status next to a Rule,
so scenario counts come from behave's own summary lines (``6 scenarios passed, 1 failed, …``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY_LINE = re.compile(r"^(\d+) (scenario|step)s? passed, (.*)$")


@dataclass
class BehaveRun:
    exit_code: int
    # (scenario name, keyword, step text, status), in behave's order, background steps included.
    steps: list[tuple[str, str, str, str]]
    # scenario name -> status from the JSON report (None where behave's JSON left it out)
    scenario_status: dict[str, str | None]
    # behave's summary counts: {"scenarios": {"passed": 6, ...}, "steps": {...}}
    counts: dict[str, dict[str, int]]
    output: str


def run_behave(workspace: Path, *args: str) -> BehaveRun:
    with tempfile.TemporaryDirectory(prefix="behave-oracle-") as tmp:
        report = Path(tmp) / "behave.json"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "behave", *args, "--no-color", "-f", "json", "-o", str(report)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        data: list[dict[str, Any]] = json.loads(report.read_text())
    steps, statuses = [], {}
    for feature in data:
        for element in feature.get("elements", []):
            if element["type"] != "scenario":
                continue  # behave also lists each Background's steps once, without results
            statuses[element["name"]] = element.get("status")
            for step in element["steps"]:
                status = step.get("result", {}).get("status", "skipped")
                steps.append((element["name"], step["keyword"], step["name"], status))
    return BehaveRun(
        proc.returncode, steps, statuses, _summary_counts(proc.stdout), proc.stdout + proc.stderr
    )


def _summary_counts(stdout: str) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for line in stdout.splitlines():
        match = SUMMARY_LINE.match(line.strip())
        if match:
            parts = {"passed": int(match.group(1))}
            for part in match.group(3).split(", "):
                number, status = part.split(" ", 1)
                parts[status] = int(number)
            counts[match.group(2) + "s"] = {k: v for k, v in parts.items() if v}
    return counts
