"""Flaky detection that explains itself: one test's results in a window -> the evidence, if any.

A test is flaky in a window when, strongest evidence first,

1. ``same_revision``: it passed and failed (failed or error) on the same revision;
2. ``passed_on_retry``: it passed on a retry after failing (``flaky_retry`` on the result);
3. ``flip_rate``: on one branch, its pass<->fail changes / (runs - 1) reach ``flip_rate`` with at
   least ``min_flips`` flips in at least ``min_runs`` runs (skipped results are not runs).

Pure: the caller passes the results in (db/flaky.py reads them) and the thresholds (from the
settings). No evidence means not flaky.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from anvil.domain.results import FAILING, PASSED

SAME_REVISION, PASSED_ON_RETRY, FLIP_RATE = "same_revision", "passed_on_retry", "flip_rate"
# Strongest first: the order of a test's evidence, and of the flaky list.
STRENGTH = (SAME_REVISION, PASSED_ON_RETRY, FLIP_RATE)
# At most this many evidence items per kind, and executions per item: enough to explain, short to read.
MAX_ITEMS = 5
MAX_EXECUTIONS = 10


@dataclass(frozen=True)
class Thresholds:
    flip_rate: float = 0.2
    min_flips: int = 2
    min_runs: int = 5

    @classmethod
    def of(cls, settings: Any) -> Thresholds:
        """From the settings object (ANVIL_FLAKY_FLIP_RATE, _MIN_FLIPS, _MIN_RUNS)."""
        return cls(settings.flaky_flip_rate, settings.flaky_min_flips, settings.flaky_min_runs)


class Result(NamedTuple):
    """What the detection reads of one test result (a tuple: thousands are built per listing)."""

    status: str
    revision: str | None
    branch: str | None
    recorded_at: datetime
    execution_id: uuid.UUID
    flaky_retry: bool = False


@dataclass(frozen=True)
class Seen:
    """One execution cited as evidence: which, how the test ended there, when."""

    execution_id: uuid.UUID
    status: str
    recorded_at: datetime


@dataclass(frozen=True)
class Evidence:
    kind: str
    executions: tuple[Seen, ...]
    revision: str | None = None
    branch: str | None = None
    runs: int = 0  # results considered (the revision's, the branch's, or the one retry)
    failures: int = 0
    flips: int | None = None
    flip_rate: float | None = None


@dataclass(frozen=True)
class Verdict:
    evidence: tuple[Evidence, ...] = field(default=())

    @property
    def flaky(self) -> bool:
        return bool(self.evidence)

    @property
    def strongest(self) -> str | None:
        return self.evidence[0].kind if self.evidence else None


def judge(results: Iterable[Result], thresholds: Thresholds) -> Verdict:
    """Whether one test is flaky in the results given (one window), and why."""
    # Ties (never within one execution) are broken by the execution id, so the order is stable.
    ordered = sorted(results, key=lambda r: (r.recorded_at, r.execution_id))
    return Verdict((*same_revision(ordered), *passed_on_retry(ordered), *flip_rate(ordered, thresholds)))


def same_revision(ordered: Sequence[Result]) -> list[Evidence]:
    """One item per revision on which the test both passed and failed, newest revision first."""
    by_revision: dict[str, list[Result]] = defaultdict(list)
    for r in ordered:
        if r.revision is not None and r.status != "skipped":
            by_revision[r.revision].append(r)
    found = []
    for revision, runs in by_revision.items():
        passed = [r for r in runs if r.status == PASSED]
        failed = [r for r in runs if r.status in FAILING]
        if passed and failed:
            # Both sides cited even when there are many: the failures first, then the passes.
            half = MAX_EXECUTIONS // 2
            cited = failed[: MAX_EXECUTIONS - min(half, len(passed))]
            cited += passed[: MAX_EXECUTIONS - len(cited)]
            branches = {r.branch for r in runs}
            found.append(
                Evidence(
                    SAME_REVISION,
                    _seen(sorted(cited, key=lambda r: r.recorded_at)),
                    revision=revision,
                    branch=branches.pop() if len(branches) == 1 else None,
                    runs=len(runs),
                    failures=len(failed),
                )
            )
    found.sort(key=lambda e: e.executions[-1].recorded_at, reverse=True)
    return found[:MAX_ITEMS]


def passed_on_retry(ordered: Sequence[Result]) -> list[Evidence]:
    """One item per passing retry of a failed execution, newest first."""
    retried = [r for r in reversed(ordered) if r.flaky_retry and r.status == PASSED]
    return [
        Evidence(PASSED_ON_RETRY, _seen([r]), revision=r.revision, branch=r.branch, runs=1)
        for r in retried[:MAX_ITEMS]
    ]


def flip_rate(ordered: Sequence[Result], thresholds: Thresholds) -> list[Evidence]:
    """One item per branch (no branch counts as one) whose flip rate reaches the threshold."""
    by_branch: dict[str | None, list[Result]] = defaultdict(list)
    for r in ordered:
        if r.status != "skipped":
            by_branch[r.branch].append(r)
    found = []
    for branch, runs in by_branch.items():
        flipped = [
            b for a, b in zip(runs, runs[1:], strict=False) if (a.status == PASSED) != (b.status == PASSED)
        ]
        if len(runs) < max(thresholds.min_runs, 2) or len(flipped) < thresholds.min_flips:
            continue
        rate = len(flipped) / (len(runs) - 1)
        if rate >= thresholds.flip_rate:
            found.append(
                Evidence(
                    FLIP_RATE,
                    _seen(flipped[-MAX_EXECUTIONS:]),  # where it flipped, the latest ones
                    branch=branch,
                    runs=len(runs),
                    failures=sum(r.status != PASSED for r in runs),
                    flips=len(flipped),
                    flip_rate=round(rate, 4),
                )
            )
    found.sort(key=lambda e: e.flip_rate or 0.0, reverse=True)
    return found[:MAX_ITEMS]


def could_flip(passed: int, failed: int, thresholds: Thresholds) -> bool:
    """Whether ``passed`` + ``failed`` runs on one branch could reach the flip-rate threshold in
    some order: each flip needs a pass and a failure, so there are at most 2 * min(passed, failed)
    flips. Lets a database keep only the candidates before reading their rows in order."""
    runs = passed + failed
    most = min(2 * min(passed, failed), runs - 1)
    return (
        runs >= max(thresholds.min_runs, 2)
        and most >= thresholds.min_flips
        and (most / (runs - 1) >= thresholds.flip_rate)
    )


def _seen(results: Iterable[Result]) -> tuple[Seen, ...]:
    return tuple(Seen(r.execution_id, r.status, r.recorded_at) for r in results)


def in_words(evidence: Evidence) -> str:
    """One line of evidence for people (selection reasons, notifications)."""
    if evidence.kind == "same_revision":
        return f"passed and failed on revision {evidence.revision}"
    if evidence.kind == "passed_on_retry":
        return f"passed on a retry after failing (execution {evidence.executions[0].execution_id})"
    where = f" on {evidence.branch}" if evidence.branch else ""
    return f"flip rate {evidence.flip_rate}{where} ({evidence.flips} flips in {evidence.runs} runs)"
