"""The ledger of a fault test: every submission it made, checked against the database at the end.

Checks (each a number in the report; the tests assert them):

- lost: accepted executions (HTTP 201) without a row, or not finished by the deadline. Every other
  row in the database (e.g. one whose commit succeeded although the API answered 503) must finish too.
- overlaps: two attempts of one execution with overlapping RUNNING intervals in the transition log.
- collisions: the detector (tests/faults/detector.py) found another attempt of its execution alive.
- duplicate_steps: more than one step row for (execution, attempt, seq), or steps of an attempt that
  was never claimed.
- over_cap: attempt above max_attempts.
- unrequested_cancels: a worker recorded CANCELLED although nobody asked for a cancel.
- invalid_paths: a transition log that is not a valid path of the state table (starting from the
  initial status, each row's from_status the previous to_status, ending at the current status).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine, text

from anvil.domain.states import FINISHED, Status, is_valid_path

FINISHED_NAMES = tuple(s.value for s in FINISHED)
REPORTS: list[dict[str, Any]] = []  # printed again in the terminal summary (conftest.py)


@dataclass
class Submission:
    status_code: int | None  # None: no HTTP answer (connection error, client timeout)
    execution_id: str | None
    latency_s: float
    error: str | None = None


@dataclass
class Ledger:
    entries: list[Submission] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, client: httpx.Client, case_id: str, *, priority: str = "NORMAL") -> Submission:
        started = time.monotonic()
        try:
            response = client.post(
                "/api/v1/executions/case", json={"test_case_id": case_id, "priority": priority}
            )
        except httpx.HTTPError as exc:
            entry = Submission(None, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
        else:
            latency = time.monotonic() - started
            ident = response.json()["id"] if response.status_code == 201 else None
            error = None if response.status_code == 201 else response.text[:300]
            entry = Submission(response.status_code, ident, latency, error)
        with self._lock:
            self.entries.append(entry)
        return entry

    @property
    def accepted(self) -> list[str]:
        return [e.execution_id for e in self.entries if e.status_code == 201 and e.execution_id]

    def codes(self) -> Counter[int | None]:
        return Counter(e.status_code for e in self.entries)

    def wait_finished(self, engine: Engine, *, timeout: float) -> float:
        """Poll until every execution in the database has finished; returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            with engine.connect() as conn:
                waiting = conn.execute(
                    text("SELECT count(*) FROM executions WHERE NOT (status = ANY(:done))"),
                    {"done": list(FINISHED_NAMES)},
                ).scalar_one()
            if waiting == 0 or time.monotonic() > deadline:
                return time.monotonic() - started
            time.sleep(0.5)

    def check(self, engine: Engine, *, timeout: float) -> dict[str, Any]:
        """Wait (bounded) for everything to finish, then measure every invariant."""
        waited = self.wait_finished(engine, timeout=timeout)
        with engine.connect() as conn:
            rows = {
                str(r.id): r
                for r in conn.execute(text("SELECT id, status, attempt, max_attempts FROM executions"))
            }
            transitions: dict[str, list[Any]] = defaultdict(list)
            for t in conn.execute(
                text(
                    "SELECT execution_id, attempt, from_status, to_status, at FROM execution_transitions "
                    "ORDER BY id"
                )
            ):
                transitions[str(t.execution_id)].append(t)
            duplicate_steps = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM step_traces GROUP BY execution_id, attempt, seq "
                    "HAVING count(*) > 1) d"
                )
            ).scalar_one()
            unclaimed_steps = conn.execute(
                text(
                    "SELECT count(*) FROM step_traces s JOIN executions e ON e.id = s.execution_id "
                    "WHERE s.attempt < 1 OR s.attempt > e.attempt"
                )
            ).scalar_one()
            # CANCELLED means a person (or a schedule) asked; a worker may only record it on request.
            unrequested_cancels = conn.execute(
                text(
                    "SELECT count(*) FROM executions e WHERE e.status = 'CANCELLED' "
                    "AND e.cancel_requested_at IS NULL AND EXISTS (SELECT 1 FROM execution_transitions t "
                    "WHERE t.execution_id = e.id AND t.to_status = 'CANCELLED' AND t.actor LIKE 'worker:%')"
                )
            ).scalar_one()
            collisions = conn.execute(text("SELECT count(*) FROM collisions")).scalar_one()
            detector_runs = conn.execute(text("SELECT count(*) FROM detector_runs")).scalar_one()

        accepted = self.accepted
        missing = [i for i in accepted if i not in rows]
        unfinished = [i for i, r in rows.items() if r.status not in FINISHED_NAMES]
        invalid = [i for i in rows if not valid_log(transitions[i], rows[i].status)]
        overlaps = sum(running_overlaps(transitions[i]) for i in rows)
        statuses = Counter(r.status for r in rows.values())
        return {
            "submitted": len(self.entries),
            "accepted": len(accepted),
            "executions": len(rows),
            "http_codes": {str(k): v for k, v in sorted(self.codes().items(), key=lambda kv: str(kv[0]))},
            "lost": len(missing) + len([i for i in unfinished if i in set(accepted)]),
            "missing_rows": len(missing),
            "unfinished": len(unfinished),
            "overlaps": overlaps,
            "collisions": collisions,
            "detector_runs": detector_runs,
            "duplicate_steps": duplicate_steps + unclaimed_steps,
            "unrequested_cancels": unrequested_cancels,
            "over_cap": sum(1 for r in rows.values() if r.attempt > r.max_attempts),
            "max_attempt": max((r.attempt for r in rows.values()), default=0),
            "invalid_paths": len(invalid),
            "statuses": dict(sorted(statuses.items())),
            "finish_wait_s": round(waited, 1),
            "_unfinished_ids": unfinished[:5],
            "_invalid_ids": invalid[:5],
        }


def valid_log(log: list[Any], current: str) -> bool:
    if not log or log[0].from_status is not None:
        return False
    for before, after in zip(log, log[1:], strict=False):
        if after.from_status != before.to_status:
            return False
    return log[-1].to_status == current and is_valid_path([Status(t.to_status) for t in log])


def running_overlaps(log: list[Any]) -> int:
    """RUNNING intervals of different attempts that overlap in time (by the transition timestamps)."""
    intervals: list[tuple[int, datetime, datetime | None]] = []
    for i, t in enumerate(log):
        if t.to_status == Status.RUNNING.value:
            end = next((u.at for u in log[i + 1 :] if u.from_status == Status.RUNNING.value), None)
            intervals.append((t.attempt, t.at, end))
    count = 0
    for a, (att_a, start_a, end_a) in enumerate(intervals):
        for att_b, start_b, end_b in intervals[a + 1 :]:
            if att_a == att_b:
                continue
            if (end_a is None or start_b < end_a) and (end_b is None or start_a < end_b):
                count += 1
    return count


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the figures on one ``FAULT-REPORT`` line and append them to $ANVIL_FAULT_REPORT (JSON)."""
    public = {"test": name, **{k: v for k, v in figures.items() if not k.startswith("_")}}
    line = "FAULT-REPORT " + json.dumps(public, sort_keys=False)
    print(line, flush=True)
    REPORTS.append(public)
    path = os.environ.get("ANVIL_FAULT_REPORT")
    if path:
        existing: list[Any] = []
        if os.path.exists(path):
            try:
                with open(path) as f:
                    existing = json.load(f)
            except (OSError, ValueError):
                existing = []
        with open(path, "w") as f:
            json.dump([*existing, public], f, indent=2)
            f.write("\n")


def assert_clean(figures: dict[str, Any], *, allow: frozenset[str] = frozenset()) -> None:
    """The invariants every fault test holds: nothing lost, overlapping, duplicated or invalid."""
    problems = {
        key: figures[key]
        for key in (
            "lost",
            "missing_rows",
            "unfinished",
            "overlaps",
            "collisions",
            "duplicate_steps",
            "over_cap",
            "invalid_paths",
            "unrequested_cancels",
        )  # fmt: skip
        if figures[key] and key not in allow
    }
    assert not problems, f"invariants broken: {problems}; figures: {figures}"
