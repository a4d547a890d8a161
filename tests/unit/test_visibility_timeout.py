"""The broker's visibility timeout and how often workers honour it (workers/celery_app.py)."""

from __future__ import annotations

import pytest

from anvil.settings import Settings
from workers.celery_app import broker_options, restore_sweep


def sweep_period(options: dict[str, int]) -> int:
    return options["unacked_restore_interval"] * options["unacked_restore_throttle"]


def test_default_timeout_is_above_the_longest_run_and_keeps_kombus_sweep() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", max_test_timeout_s=3600)
    _, options = broker_options(settings)
    assert options["visibility_timeout"] == 4200
    assert sweep_period(options) == 100  # kombu's own default: nothing changes for a long timeout


def test_a_set_timeout_is_used_and_swept_about_five_times_per_timeout() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", broker_visibility_timeout_s=5)
    _, options = broker_options(settings)
    assert options["visibility_timeout"] == 5
    assert sweep_period(options) == 1


SWEEPS = [(1, 1), (5, 1), (30, 6), (60, 10), (250, 50), (10**6, 100)]


@pytest.mark.parametrize(("timeout_s", "period_s"), SWEEPS)
def test_sweep_period_follows_the_timeout_within_bounds(timeout_s: int, period_s: int) -> None:
    assert sweep_period(restore_sweep(timeout_s)) == period_s


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="broker_visibility_timeout_s"):
        Settings(broker_visibility_timeout_s=0)
