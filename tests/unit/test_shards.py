"""The shard planner: longest processing time first, unknown durations, counts, auto."""

from __future__ import annotations

import pytest

from anvil.domain.shards import (
    UNKNOWN_S,
    Refit,
    expected_durations,
    imbalance,
    plan,
    refit,
    shard_count,
    stops_at_first_failure,
    xdist_option,
)


@pytest.mark.parametrize(
    ("requested", "tests", "slots", "min_tests", "expected"),
    [
        (4, 100, 1, 5, 4),  # asked for: slots do not matter
        (4, 3, 8, 5, 3),  # never more shards than tests
        (64, 1000, 1, 1, 64),
        (1, 100, 8, 5, 1),
        ("auto", 100, 4, 5, 4),  # auto: the live slots
        ("auto", 12, 4, 5, 2),  # ... but at least min_tests per shard
        ("auto", 3, 4, 5, 1),
        ("auto", 100, 0, 5, 1),  # no live worker known: one shard
        ("auto", 10_000, 500, 5, 64),  # capped at 64
        (3, 0, 2, 5, 1),  # nothing collected
    ],
)
def test_shard_count(requested: int | str, tests: int, slots: int, min_tests: int, expected: int) -> None:
    assert shard_count(requested, tests=tests, slots=slots, min_tests=min_tests) == expected


def test_unknown_tests_get_the_median_of_the_known() -> None:
    assert expected_durations(["a", "b", "c", "d"], {"a": 1.0, "b": 3.0, "c": 10.0}) == {
        "a": 1.0, "b": 3.0, "c": 10.0, "d": 3.0,
    }  # fmt: skip
    assert expected_durations(["a", "b"], {}) == {"a": 1.0, "b": 1.0}


def test_longest_first_balances_and_keeps_collection_order_inside_a_shard() -> None:
    tests = ["t1", "t2", "t3", "t4", "t5", "t6"]
    known = {"t1": 1.0, "t2": 8.0, "t3": 2.0, "t4": 7.0, "t5": 3.0, "t6": 3.0}
    shards = plan(tests, known, 2)
    # LPT: t2 8 -> A, t4 7 -> B, t5 3 -> B (10), t6 3 -> A (11), t3 2 -> B (12), t1 1 -> A (12)
    assert [s.tests for s in shards] == [("t1", "t2", "t6"), ("t3", "t4", "t5")]
    assert [s.planned_s for s in shards] == [12.0, 12.0]
    assert sorted(t for s in shards for t in s.tests) == sorted(tests)  # each test exactly once


def test_plan_keeps_neighbouring_tests_of_a_file_together_in_runs_of_at_most_an_eighth_of_a_share() -> None:
    tests = [f"a.py::t{i}" for i in range(32)] + [f"b.py::t{i}" for i in range(8)] + ["c.py::t0"]
    shards = plan(tests, {}, 2)  # 41 s without history: runs of at most 41 / 16 s, 2 tests each
    for shard in shards:
        runs = [tests.index(t) for t in shard.tests]
        # Every test's neighbour in its file (its pair) is in the same shard.
        assert all((i ^ 1) in runs or i == 40 for i in runs), shard
    assert sorted(len(s.tests) for s in shards) == [20, 21]
    assert sorted(t for s in shards for t in s.tests) == sorted(tests)


def test_plan_is_the_same_for_the_same_input_and_without_history_splits_evenly() -> None:
    tests = [f"t{i}" for i in range(10)]
    first, again = plan(tests, {}, 3), plan(tests, {}, 3)
    assert first == again
    assert sorted(len(s.tests) for s in first) == [3, 3, 4]


def test_imbalance() -> None:
    assert imbalance([10.0, 10.0]) == 1.0
    assert imbalance([12.0, 6.0, 6.0]) == 1.5
    assert imbalance([]) is None
    assert imbalance([0.0, 0.0]) is None


@pytest.mark.parametrize(
    ("args", "stops"),
    [
        (["tests", "-x"], True),
        (["--exitfirst"], True),
        (["-xq", "tests"], True),
        (["--maxfail", "1"], True),
        (["--maxfail=1"], True),
        (["--maxfail=2"], False),
        (["-k", "x"], False),  # a value, not the flag
        (["tests", "-q"], False),
        ([], False),
    ],
)
def test_stops_at_first_failure(args: list[str], stops: bool) -> None:
    assert stops_at_first_failure({"args": args}) is stops


@pytest.mark.parametrize(
    ("args", "found"),
    [
        (["-n", "2"], "-n"),
        (["-n2"], "-n2"),
        (["--numprocesses=auto"], "--numprocesses"),
        (["--dist", "load"], "--dist"),
        (["tests", "-q"], None),
        (["-k", "n"], None),
    ],
)
def test_xdist_options_are_found(args: list[str], found: str | None) -> None:
    assert xdist_option(args) == found


def test_refit_drops_the_tests_gone_and_plans_new_ones_at_the_median_on_the_least_loaded_shards() -> None:
    planned = {"a": (0, 4.0), "b": (1, 1.0), "c": (1, 2.0), "d": (0, 0.5), "gone": (1, 9.0)}
    change = refit(planned, ["a", "new1", "b", "c", "d", "new2", "new3"], 2)
    assert change.gone == ("gone",)
    # Kept: shard 0 has 4.5 s, shard 1 has 3 s; the median of the kept is 1.5 s.
    assert change.added == (("new1", 1, 1.5), ("new2", 0, 1.5), ("new3", 1, 1.5))


def test_refit_of_an_unchanged_list_changes_nothing_and_of_an_empty_plan_uses_the_default_time() -> None:
    assert refit({"a": (0, 1.0), "b": (1, 2.0)}, ["b", "a"], 2) == Refit((), ())
    assert refit({}, ["x", "y"], 2).added == (("x", 0, UNKNOWN_S), ("y", 1, UNKNOWN_S))
