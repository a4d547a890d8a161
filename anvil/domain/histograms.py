"""Duration histograms: what a run's rollup keeps of its tests' durations, so percentiles over a
window merge a few hundred small histograms instead of sorting every result.

Buckets grow by 10 %: bucket ``i`` holds durations in [1 ms × 1.1^i, 1 ms × 1.1^(i+1)), durations
under a millisecond go in bucket ``-1``. A percentile read from them is the geometric middle of its
bucket, within 5 % of the exact value; enough to tell 2 s from 3 s, which is what a p95 is for.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

BASE_S = 0.001
GROWTH = 1.1
_LOG_GROWTH = math.log(GROWTH)
Histogram = dict[str, int]  # bucket index (as text: the JSON key) -> count


def bucket_of(duration_s: float) -> int:
    if duration_s < BASE_S:
        return -1
    return int(math.log(duration_s / BASE_S) / _LOG_GROWTH)


def middle_of(bucket: int) -> float:
    """The value a bucket stands for: 0 below a millisecond, else the geometric middle."""
    return 0.0 if bucket < 0 else BASE_S * GROWTH ** (bucket + 0.5)


def histogram(durations: Iterable[float | None]) -> Histogram:
    counts = Counter(str(bucket_of(d)) for d in durations if d is not None)
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def merge(histograms: Iterable[Mapping[str, int]]) -> Counter[int]:
    total: Counter[int] = Counter()
    for h in histograms:
        for bucket, count in h.items():
            total[int(bucket)] += int(count)
    return total


def quantile(merged: Mapping[int, int], fraction: float) -> float | None:
    """The value below which ``fraction`` of the durations lie (nearest rank), None when empty."""
    n = sum(merged.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(fraction * n))
    seen = 0
    for bucket in sorted(merged):
        seen += merged[bucket]
        if seen >= rank:
            return middle_of(bucket)
    return middle_of(max(merged))
