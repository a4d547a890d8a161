"""Pure decisions of the scheduler tick. Inputs include ``now``; no I/O."""

from __future__ import annotations

from datetime import datetime

MAX_BACKOFF_DOUBLINGS = 5


def republish_wait_s(publish_count: int, after_s: float) -> float:
    """How long a QUEUED execution may stay unclaimed after its last publish.

    The wait doubles with each re-publish (up to 32x), so a long legitimate backlog is not
    flooded with duplicate messages, while a lost message is still found within ``after_s``.
    """
    return after_s * 2 ** min(max(publish_count - 1, 0), MAX_BACKOFF_DOUBLINGS)


def should_republish(*, last_published: datetime, publish_count: int, now: datetime, after_s: float) -> bool:
    return (now - last_published).total_seconds() >= republish_wait_s(publish_count, after_s)
