"""Duration histograms (anvil/domain/histograms.py): percentiles within 5 % of the exact ones."""

from __future__ import annotations

import random

import pytest

from anvil.domain.histograms import bucket_of, histogram, merge, middle_of, quantile


@pytest.mark.parametrize(
    ("duration", "bucket"),
    [(0.0, -1), (0.0009, -1), (0.001, 0), (0.0011, 1), (0.00105, 0), (1.0, 72), (3600.0, 158)],
)
def test_buckets_grow_by_ten_percent_from_a_millisecond(duration: float, bucket: int) -> None:
    assert bucket_of(duration) == bucket


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_percentiles_of_merged_histograms_are_within_five_percent(seed: int, fraction: float) -> None:
    rng = random.Random(seed)
    runs = [[rng.lognormvariate(-2, 1.2) for _ in range(rng.randint(1, 300))] for _ in range(40)]
    every = sorted(d for run in runs for d in run)
    exact = every[max(0, int(-(-fraction * len(every) // 1)) - 1)]  # nearest rank
    approx = quantile(merge(histogram(run) for run in runs), fraction)
    assert approx is not None
    assert abs(approx - exact) / exact < 0.05


def test_empty_and_none_durations() -> None:
    assert quantile(merge([]), 0.5) is None
    assert histogram([None, 0.0]) == {"-1": 1}
    assert quantile(merge([{"-1": 3}]), 0.95) == 0.0
    assert middle_of(0) == pytest.approx(0.001 * 1.1**0.5)
