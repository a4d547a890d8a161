"""Splitting one case's tests into shards that end at about the same time.

Longest processing time first, over runs of neighbouring tests: the collected tests are cut into
runs of the same file (each at most 1/CHUNKS of a shard's share of the time), the runs sorted by
their expected time (the sum of their tests' p50 of recent runs; a test with no history gets the
median of those that have one, or 1 s when none has), each run given to the shard with the least
planned time so far. A shard then sets up each module it runs once, as pytest alone would: split
test by test, both shards paid every module's setup and warm-up, and their tests ran 5-15 %
slower than pytest-xdist's (bench/sharding.py). Ties keep the collection order, so a plan is the
same for the same input. ``auto`` shards = the worker slots consuming the execution's queue,
capped so that every shard gets at least ``min_tests`` tests.

Pure: the worker passes in the collected tests, their durations and the slot count.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anvil.domain.specs.base import MAX_SHARDS

SHARDABLE = ("pytest", "bdd")  # the kinds whose tests can be split
UNKNOWN_S = 1.0  # a test's expected duration when no test of the case has any history
CHUNKS = 8  # runs of neighbouring tests per shard's share of the time, at least


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    tests: tuple[str, ...]  # in collection order
    planned_s: float


def shard_count(requested: int | str, *, tests: int, slots: int, min_tests: int) -> int:
    """How many shards: ``requested`` (1-64) or ``"auto"`` (``slots``), never more than there are
    tests, and for auto never so many that a shard would get fewer than ``min_tests`` tests."""
    if tests <= 0:
        return 1
    if requested == "auto":
        wanted = min(max(slots, 1), max(tests // max(min_tests, 1), 1))
    else:
        wanted = int(requested)
    return max(1, min(wanted, tests, MAX_SHARDS))


XDIST_OPTIONS = ("-n", "--numprocesses", "--dist", "-d", "--tx", "--maxprocesses")


def xdist_option(args: Sequence[str]) -> str | None:
    """The pytest-xdist option among ``args``, if any: shards and xdist do not mix (a shard hands
    its tests to one pytest process, one at a time)."""
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in XDIST_OPTIONS or (option.startswith("-n") and option[2:].isdigit()):
            return option
    return None


def stops_at_first_failure(spec: Mapping[str, Any]) -> bool:
    """A pytest case run with -x / --exitfirst / --maxfail=1: one failure in any shard stops them all."""
    args = [str(a) for a in spec.get("args") or ()]
    for i, arg in enumerate(args):
        if arg in ("-x", "--exitfirst", "--maxfail=1") or (
            arg == "--maxfail" and args[i + 1 : i + 2] == ["1"]
        ):
            return True
        if arg.startswith("-") and not arg.startswith("--") and "x" in arg[1:] and arg[1:].isalpha():
            return True  # combined short flags, e.g. -xq
    return False


def expected_durations(tests: Sequence[str], known: Mapping[str, float]) -> dict[str, float]:
    """Each test's expected duration: its own p50, else the median of the known ones."""
    seen = [known[t] for t in tests if t in known]
    fallback = statistics.median(seen) if seen else UNKNOWN_S
    return {t: known.get(t, fallback) for t in tests}


def plan(tests: Sequence[str], known: Mapping[str, float], count: int) -> list[Shard]:
    """``tests`` (unique keys, in collection order) into ``count`` shards, longest first: by runs
    of neighbouring tests of one file (a shard then sets up each module it touches once, as one
    process would), each run at most 1/CHUNKS of a shard's share of the time."""
    durations = expected_durations(tests, known)
    limit = sum(durations.values()) / (count * CHUNKS)
    runs = _runs(tests, durations, limit)
    heap = [(0.0, i) for i in range(count)]  # (planned time, shard index): least loaded first
    given: list[list[str]] = [[] for _ in range(count)]
    planned = [0.0] * count
    for _, run in sorted(enumerate(runs), key=lambda r: (-sum(durations[t] for t in r[1]), r[0])):
        load, index = heapq.heappop(heap)
        given[index].extend(run)
        planned[index] = load + sum(durations[t] for t in run)
        heapq.heappush(heap, (planned[index], index))
    order = {t: i for i, t in enumerate(tests)}
    return [
        Shard(i, tuple(sorted(given[i], key=order.__getitem__)), round(planned[i], 3)) for i in range(count)
    ]


def _runs(tests: Sequence[str], durations: Mapping[str, float], limit: float) -> list[list[str]]:
    """Neighbouring tests of the same file, cut before a run would pass ``limit`` seconds."""
    runs: list[list[str]] = []
    total = 0.0
    for test in tests:
        here = test.split("::", 1)[0]
        last = runs[-1] if runs else None
        if last is None or last[0].split("::", 1)[0] != here or total + durations[test] > limit:
            runs.append([test])
            total = durations[test]
        else:
            last.append(test)
            total += durations[test]
    return runs


def imbalance(durations_s: Sequence[float]) -> float | None:
    """The slowest shard's time over the mean (1.0 = perfectly even); None without times."""
    if not durations_s:
        return None
    mean = sum(durations_s) / len(durations_s)
    return round(max(durations_s) / mean, 3) if mean > 0 else None


@dataclass(frozen=True)
class Refit:
    """How a plan made from an earlier run's test list changes to fit the tests collected now."""

    gone: tuple[str, ...]  # planned, not collected any more: dropped from the plan
    added: tuple[tuple[str, int, float], ...]  # collected, not planned: (key, shard index 0-based, planned s)


def refit(planned: Mapping[str, tuple[int, float]], collected: Sequence[str], count: int) -> Refit:
    """Fit a plan (each test's 0-based shard and planned seconds) to the tests collected now: the
    tests no longer collected go; new tests get the median planned time and go, longest-first
    style, each to the shard with the least planned time."""
    now = set(collected)
    gone = tuple(key for key in planned if key not in now)
    new = [key for key in dict.fromkeys(collected) if key not in planned]
    kept = [planned[key] for key in planned if key in now]
    fallback = statistics.median(seconds for _, seconds in kept) if kept else UNKNOWN_S
    loads = [0.0] * count
    for index, seconds in kept:
        loads[index] += seconds
    heap = [(load, i) for i, load in enumerate(loads)]
    heapq.heapify(heap)
    added = []
    for key in new:
        load, index = heapq.heappop(heap)
        added.append((key, index, fallback))
        heapq.heappush(heap, (load + fallback, index))
    return Refit(gone, tuple(added))
