"""The tick's last look at the broker: which silent QUEUED executions still have a message in Redis.

Reading the queues costs one LRANGE per list (about 1 KB per waiting message), so one look serves
many ticks: it vouches for what it saw for ``ANVIL_REPUBLISH_AFTER_S`` (anvil/domain/policy.py,
``vouched_until``). A new look is taken only when a silent execution is not vouched for. In a
backlog that is about one look per ``ANVIL_REPUBLISH_AFTER_S``; a message lost after a look is
published again at most that long after it was lost, as before.

The state lives in the tick leader's process: a new leader starts with no look and takes one. A
failed look is remembered for ``ANVIL_REPUBLISH_AFTER_S`` too, while silent executions are
published again without looking (a Redis outage must not stall every tick on its timeouts).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from anvil.domain.policy import missing_from_broker, vouched_until
from anvil.settings import Settings
from workers.publish import look


@dataclass
class LastLook:
    at: float = float("-inf")  # time.monotonic() when it was taken
    vouched: dict[uuid.UUID, float] | None = None  # None: no look yet, or it failed


_last = LastLook()


def vouched_for(silent: Collection[uuid.UUID], settings: Settings) -> dict[uuid.UUID, float] | None:
    """What the broker vouches for (execution id -> until when, on ``time.monotonic()``), looking
    again if the last look does not cover every one of ``silent``; None when it cannot be read."""
    now = time.monotonic()
    failed_recently = _last.vouched is None and now < _last.at + settings.republish_after_s
    if not failed_recently and missing_from_broker(silent, _last.vouched, now=now):
        seen = look()
        _last.at = now
        _last.vouched = (
            None
            if seen is None
            else vouched_until(
                waiting=seen.waiting, taken=seen.taken, looked_at=now, after_s=settings.republish_after_s
            )
        )
    return _last.vouched


def forget() -> None:
    """Drop the last look (tests that change Redis behind the tick's back)."""
    _last.at, _last.vouched = float("-inf"), None
