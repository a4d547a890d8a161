"""Pure decisions of the scheduler and the retry machinery. Inputs include ``now``; no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from anvil.domain.states import Status

MAX_BACKOFF_DOUBLINGS = 5
RETRYABLE_NAMES = ("FAILED", "ERROR", "TIMEOUT")


def republish_wait_s(publish_count: int, after_s: float) -> float:
    """How long a QUEUED execution may stay unclaimed after its last publish.

    The wait doubles with each re-publish (up to 32x), so a long legitimate backlog is not
    flooded with duplicate messages, while a lost message is still found within ``after_s``.
    """
    return after_s * 2 ** min(max(publish_count - 1, 0), MAX_BACKOFF_DOUBLINGS)


def should_republish(*, last_published: datetime, publish_count: int, now: datetime, after_s: float) -> bool:
    return (now - last_published).total_seconds() >= republish_wait_s(publish_count, after_s)


def vouched_until(
    *, waiting: Iterable[uuid.UUID], taken: Mapping[uuid.UUID, float], looked_at: float, after_s: float
) -> dict[uuid.UUID, float]:
    """Until when (on the looker's clock) one look at the broker vouches for each execution it saw.

    A message waiting in a queue is vouched for ``after_s`` from the look, so a message lost after
    the look is missed for at most ``after_s``, as when every silent execution was re-published. A
    message a worker took (``taken``: seconds since) is vouched for ``after_s`` from when it was
    taken: a worker that has not claimed it by then most likely died holding it.
    """
    until = {ident: looked_at + after_s for ident in waiting}
    for ident, age in taken.items():
        until[ident] = max(until.get(ident, float("-inf")), looked_at + after_s - age)
    return until


def missing_from_broker(
    silent: Iterable[uuid.UUID], vouched: Mapping[uuid.UUID, float] | None, *, now: float
) -> list[uuid.UUID]:
    """Of the executions silent too long, those no look at the broker vouches for at ``now``.

    ``vouched`` None (the broker could not be read): all of them. PostgreSQL decides, and a message
    too many is harmless (the claim drops it), a missing one is not.
    """
    if vouched is None:
        return list(silent)
    return [ident for ident in silent if vouched.get(ident, now) <= now]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    retry_on: tuple[str, ...] = ("ERROR", "TIMEOUT")
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    jitter: float = 0.1  # +/- this fraction of the delay

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "retry_on": list(self.retry_on)}


DEFAULT_RETRY = RetryPolicy()


def resolve_retry_policy(*layers: Mapping[str, Any] | None) -> RetryPolicy:
    """Later layers override earlier ones key by key: case, then suite, then the submission."""
    merged: dict[str, Any] = DEFAULT_RETRY.as_dict()
    for layer in layers:
        if layer:
            merged.update({k: v for k, v in layer.items() if v is not None})
    merged["retry_on"] = tuple(merged["retry_on"])
    return RetryPolicy(**merged)


def should_retry(policy: RetryPolicy, *, status: Status, retry_index: int) -> bool:
    return status.value in policy.retry_on and retry_index < policy.max_retries


def backoff_s(policy: RetryPolicy, *, retry_index: int, rand: float) -> float:
    """Delay before retry number ``retry_index + 1``: exponential, capped, jittered (rand in [0, 1))."""
    base = min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** min(retry_index, 30))
    return max(0.0, base * (1 + policy.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class LostDecision:
    status: Status
    reason: str


def on_lease_expired(
    *,
    attempt: int,
    max_attempts: int,
    started_at: datetime | None,
    timeout_s: float,
    grace_s: float,
    now: datetime,
    cancel_requested: bool,
) -> LostDecision:
    """What to do with a RUNNING execution whose worker stopped renewing its lease."""
    if cancel_requested:
        return LostDecision(Status.CANCELLED, "cancelled; its worker was lost")
    if started_at is not None and now >= started_at + timedelta(seconds=timeout_s + grace_s):
        return LostDecision(
            Status.TIMEOUT, f"deadline of {timeout_s:g}s passed and its worker stopped heartbeating"
        )
    if attempt >= max_attempts:
        return LostDecision(Status.ABORTED, f"worker_lost: {attempt} attempts, none finished")
    return LostDecision(Status.QUEUED, "worker_lost")


@dataclass(frozen=True)
class SlotDecision:
    fire_at: datetime | None  # the slot to fire now, if any
    skipped: list[datetime] = field(default_factory=list)  # older missed slots passed over


def due_slot(
    *, cron: str, tz: str, last_slot: datetime | None, since: datetime, now: datetime
) -> SlotDecision:
    """The latest slot at or before ``now`` that has not fired; older missed ones are passed over.

    ``since`` bounds the search when nothing fired yet (the schedule's creation or last change),
    so a new schedule does not fire for slots before it existed.
    """
    floor = last_slot if last_slot is not None and last_slot > since else since
    # Just past ``now``: a slot exactly at ``now`` is due (croniter's walk back is exclusive).
    earlier = _slots(cron, tz, now + timedelta(microseconds=1), backwards=True)
    latest = next(earlier)
    if latest <= floor:
        return SlotDecision(None)
    missed: list[datetime] = []
    for _ in range(5):
        slot = next(earlier)
        if slot <= floor:
            break
        missed.append(slot)
    return SlotDecision(latest, missed)


def next_fire_times(*, cron: str, tz: str, now: datetime, count: int = 5) -> list[datetime]:
    later = _slots(cron, tz, now, backwards=False)
    return [next(later) for _ in range(count)]


def _slots(cron: str, tz: str, start: datetime, *, backwards: bool) -> Iterator[datetime]:
    """Fire times (UTC) strictly before or after ``start``, nearest first.

    When clocks go back, a wall time like 02:30 happens twice; a schedule with a fixed hour
    fires at the first of them only (as cron does), so a nightly run does not run twice that night.
    """
    zone = ZoneInfo(tz)
    walker = croniter(cron, start.astimezone(zone))
    fixed_hour = cron.split()[1] != "*"
    while True:
        slot = walker.get_prev(datetime) if backwards else walker.get_next(datetime)
        utc = slot.astimezone(UTC)
        if fixed_hour and _repeated_wall_time(utc.astimezone(zone)):
            continue
        yield utc


def _repeated_wall_time(local: datetime) -> bool:
    """The second occurrence of an ambiguous local time (the hour repeated when DST ends)."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def valid_cron(cron: str) -> bool:
    """Five standard fields that croniter accepts and that fire at least once (not e.g. Feb 31)."""
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        return False
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True
