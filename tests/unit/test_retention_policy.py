"""anvil/domain/retention.py: the cutoffs and when the next round is due, with ``now`` passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anvil.domain.retention import ROUND_EVERY_S, Cutoffs, cutoffs, next_round_at

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("days", "results_days", "expected"),
    [
        (90, 365, Cutoffs(datetime(2030, 3, 3, 12, 0, tzinfo=UTC), datetime(2029, 6, 1, 12, 0, tzinfo=UTC))),
        (1, 1, Cutoffs(NOW - timedelta(days=1), NOW - timedelta(days=1))),
        # Results kept for less time than executions: each by its own setting.
        (30, 7, Cutoffs(NOW - timedelta(days=30), NOW - timedelta(days=7))),
    ],
)
def test_cutoffs(days: int, results_days: int, expected: Cutoffs) -> None:
    assert cutoffs(NOW, retention_days=days, results_retention_days=results_days) == expected


@pytest.mark.parametrize(
    ("finished", "expected"), [(True, NOW + timedelta(seconds=ROUND_EVERY_S)), (False, NOW)]
)
def test_the_next_round_is_a_minute_away_unless_this_one_left_work(
    finished: bool, expected: datetime
) -> None:
    assert next_round_at(NOW, finished=finished) == expected
