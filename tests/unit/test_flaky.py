"""Flaky detection as tables: one test's results in, the evidence out (anvil/domain/flaky.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from anvil.domain.flaky import (
    FLIP_RATE,
    PASSED_ON_RETRY,
    SAME_REVISION,
    Result,
    Thresholds,
    could_flip,
    judge,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULT = Thresholds(flip_rate=0.2, min_flips=2, min_runs=5)
CODE = {"P": "passed", "F": "failed", "E": "error", "S": "skipped", "R": "passed"}


def runs(pattern: str, *, revisions: str | None = None, branch: str | None = "main") -> list[Result]:
    """One result per letter, an hour apart: P passed, F failed, E error, S skipped, R passed on a
    retry after failing. ``revisions``: one letter per run (same letter, same revision); default
    all different."""
    return [
        Result(
            status=CODE[letter],
            revision=f"rev-{revisions[i]}" if revisions else f"rev-{i}",
            branch=branch,
            recorded_at=T0 + timedelta(hours=i),
            execution_id=uuid.UUID(int=i + 1),
            flaky_retry=letter == "R",
        )
        for i, letter in enumerate(pattern)
    ]


@pytest.mark.parametrize(
    ("pattern", "revisions", "kinds"),
    [
        # no failure, or no pass: never flaky
        ("PPPPPPPP", None, []),
        ("FFFFFFFF", "aaaaaaaa", []),
        ("", None, []),
        # passed and failed on one revision: the strongest evidence, whatever the flip rate
        ("PF", "aa", [SAME_REVISION]),
        ("PE", "aa", [SAME_REVISION]),  # error counts as a failure
        ("PS", "aa", []),  # skipped counts as neither
        ("PF", "ab", []),
        ("PPPPPPPPPF", "abcdefghij", []),  # one failure in ten: flip rate 1/9
        ("PPPPPPPPPPPFP", "abcdefghijkll", [SAME_REVISION]),  # a re-run of that revision passes
        # passed on retry after failing
        ("FR", "ab", [PASSED_ON_RETRY]),
        ("FR", "aa", [SAME_REVISION, PASSED_ON_RETRY]),
        # flip rate: changes / (runs - 1) on one branch, >= 0.2 with >= 2 flips in >= 5 runs
        ("PFPPP", None, [FLIP_RATE]),  # 2 / 4 = 0.5
        ("PFP", None, []),  # 3 runs: too few
        ("PPPPF", None, []),  # 1 flip: too few
        ("PPPPPPPPPPFP", None, []),  # 2 flips in 12: 2 / 11 = 0.18
        ("PPPPPPPPFPP", None, [FLIP_RATE]),  # 2 flips in 11 runs: 2 / 10 = 0.2, at the threshold
        ("PPPSSSSFSSP", None, [FLIP_RATE]),  # skipped are not runs: PPPFP, 2 / 4
        ("PEPEPE", None, [FLIP_RATE]),
    ],
)
def test_evidence_table(pattern: str, revisions: str | None, kinds: list[str]) -> None:
    verdict = judge(runs(pattern, revisions=revisions), DEFAULT)
    assert [e.kind for e in verdict.evidence] == kinds
    assert verdict.flaky is bool(kinds)


def test_same_revision_names_the_revision_and_its_executions_oldest_first() -> None:
    results = runs("PFPP", revisions="abab")
    [evidence] = judge(results, Thresholds(min_runs=100)).evidence
    assert (evidence.kind, evidence.revision, evidence.branch) == (SAME_REVISION, "rev-b", "main")
    assert [(s.execution_id.int, s.status) for s in evidence.executions] == [(2, "failed"), (4, "passed")]
    assert (evidence.runs, evidence.failures) == (2, 1)


def test_same_revision_on_two_branches_names_no_branch_and_cites_both_sides_when_there_are_many() -> None:
    results = runs("F" * 20, revisions="a" * 20) + [
        Result("passed", "rev-a", "feature", T0 + timedelta(days=2), uuid.UUID(int=99))
    ]
    [evidence] = judge(results, DEFAULT).evidence
    assert evidence.branch is None
    assert len(evidence.executions) == 10
    assert {s.status for s in evidence.executions} == {"passed", "failed"}
    assert (evidence.runs, evidence.failures) == (21, 20)


def test_passed_on_retry_cites_the_passing_execution() -> None:
    [evidence] = judge(runs("PFR", revisions="abc"), Thresholds(min_runs=100)).evidence
    assert evidence.kind == PASSED_ON_RETRY
    assert [s.execution_id.int for s in evidence.executions] == [3]
    assert evidence.revision == "rev-c"


def test_flip_rate_is_per_branch() -> None:
    # Alternating across two branches, but steady on each: no flips on either.
    main = runs("PPPPPP", branch="main")
    feature = [
        Result("failed", f"f-{i}", "feature", T0 + timedelta(hours=i, minutes=30), uuid.UUID(int=100 + i))
        for i in range(6)
    ]
    assert not judge(main + feature, DEFAULT).flaky
    # On one branch the same sequence flips ten times in eleven runs.
    [evidence] = judge(runs("PFPFPFPFPFP", branch="main"), DEFAULT).evidence
    assert (evidence.kind, evidence.branch, evidence.flips, evidence.runs) == (FLIP_RATE, "main", 10, 11)
    assert evidence.flip_rate == 1.0
    assert [s.execution_id.int for s in evidence.executions] == list(range(2, 12))  # where it flipped


def test_results_without_a_branch_form_a_branch_of_their_own() -> None:
    [evidence] = judge(runs("PFPFP", branch=None), DEFAULT).evidence
    assert (evidence.kind, evidence.branch) == (FLIP_RATE, None)


def test_order_of_the_input_does_not_matter() -> None:
    results = runs("PFPFPPPP")
    assert judge(results, DEFAULT) == judge(list(reversed(results)), DEFAULT)


@pytest.mark.parametrize(
    ("thresholds", "pattern", "flaky"),
    [
        (Thresholds(flip_rate=0.5, min_flips=2, min_runs=5), "PFPPP", True),  # 2 / 4
        (Thresholds(flip_rate=0.6, min_flips=2, min_runs=5), "PFPPP", False),
        (Thresholds(flip_rate=0.2, min_flips=3, min_runs=5), "PFPPP", False),
        (Thresholds(flip_rate=0.2, min_flips=2, min_runs=6), "PFPPP", False),
        (Thresholds(flip_rate=0.1, min_flips=1, min_runs=2), "PF", True),
    ],
)
def test_thresholds(thresholds: Thresholds, pattern: str, flaky: bool) -> None:
    assert judge(runs(pattern), thresholds).flaky is flaky


@pytest.mark.parametrize(
    ("passed", "failed", "possible"),
    [
        (4, 1, True),  # PPFPP: 2 flips in 5 runs
        (10, 1, True),  # at most 2 flips in 11 runs: 2 / 10 = 0.2, at the threshold
        (11, 1, False),  # 2 / 11
        (28, 1, False),
        (25, 3, True),  # 6 / 27 = 0.22
        (5, 0, False),
        (2, 2, False),  # 4 runs: too few
        (3, 2, True),
    ],
)
def test_could_flip_bounds_the_flip_rate_from_counts(passed: int, failed: int, possible: bool) -> None:
    assert could_flip(passed, failed, DEFAULT) is possible


def test_could_flip_never_drops_a_test_the_full_judgement_finds() -> None:
    # Every sequence of up to 9 runs: when judge() finds a flip rate, the counts allowed it.
    for n in range(1, 10):
        for bits in range(2**n):
            pattern = "".join("F" if bits >> i & 1 else "P" for i in range(n))
            if any(e.kind == FLIP_RATE for e in judge(runs(pattern), DEFAULT).evidence):
                assert could_flip(pattern.count("P"), pattern.count("F"), DEFAULT), pattern


def test_thresholds_from_settings() -> None:
    from anvil.settings import Settings

    settings = Settings(flaky_flip_rate=0.3, flaky_min_flips=4, flaky_min_runs=9)
    assert Thresholds.of(settings) == Thresholds(0.3, 4, 9)
