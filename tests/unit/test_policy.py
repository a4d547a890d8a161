"""The reconciler's re-publish backoff, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anvil.domain.policy import republish_wait_s, should_republish

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("publish_count", "after_s", "wait_s"),
    [
        (0, 10.0, 10.0),  # never counted as published: the base wait
        (1, 10.0, 10.0),  # the submission's own publish
        (2, 10.0, 20.0),
        (3, 10.0, 40.0),
        (4, 10.0, 80.0),
        (5, 10.0, 160.0),
        (6, 10.0, 320.0),  # 32x: the cap
        (7, 10.0, 320.0),
        (100, 10.0, 320.0),
        (1, 0.5, 0.5),
        (3, 0.5, 2.0),
        (50, 0.5, 16.0),
    ],
)
def test_republish_wait_doubles_up_to_32x(publish_count: int, after_s: float, wait_s: float) -> None:
    assert republish_wait_s(publish_count, after_s) == wait_s


@pytest.mark.parametrize(
    ("silent_s", "publish_count", "due"),
    [
        (0.0, 1, False),
        (9.999, 1, False),
        (10.0, 1, True),  # exactly the wait: due
        (11.0, 1, True),
        (11.0, 2, False),  # second publish: waits 20 s
        (20.0, 2, True),
        (319.0, 9, False),
        (320.0, 9, True),
        (-5.0, 1, False),  # published "in the future" (clock skew): not due
    ],
)
def test_should_republish(silent_s: float, publish_count: int, due: bool) -> None:
    assert (
        should_republish(
            last_published=T0,
            publish_count=publish_count,
            now=T0 + timedelta(seconds=silent_s),
            after_s=10.0,
        )
        is due
    )
