"""Pure rules for a suite's result and progress, from counts of its members' last-attempt statuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anvil.domain.states import FINISHED, Status

S = Status
Counts = Mapping[str, int]


def suite_result(counts: Counts) -> Status | None:
    """The suite's final status, or None while a member is still going.

    ``counts`` holds each member's last attempt (a RETRYING one is superseded by its retry).
    """
    found = {Status(s) for s, n in counts.items() if n}
    if not found <= FINISHED:
        return None
    if S.FAILED in found:
        return S.FAILED
    if found & {S.ERROR, S.ABORTED}:
        return S.ERROR
    if S.TIMEOUT in found:
        return S.TIMEOUT
    if S.CANCELLED in found:
        return S.CANCELLED
    if found == {S.SKIPPED}:  # nothing ran (e.g. every member expired): not a pass
        return S.SKIPPED
    return S.PASSED


def progress(counts: Counts) -> dict[str, Any]:
    done = sum(n for status, n in counts.items() if Status(status) in FINISHED)
    return {"total": sum(counts.values()), "done": done, "by_status": dict(sorted(counts.items()))}


def any_failure(counts: Counts) -> bool:
    """A member ended in failure for good (what fail_fast reacts to)."""
    return any(counts.get(s.value, 0) for s in (S.FAILED, S.ERROR, S.TIMEOUT, S.ABORTED))


def started(counts: Counts) -> bool:
    return any(n for s, n in counts.items() if s not in (S.PENDING, S.SCHEDULED, S.QUEUED))
