"""The transition table, walked whole."""

from __future__ import annotations

import itertools

import pytest

from anvil.domain.states import (
    ACTIVE,
    ALLOWED,
    FINISHED,
    RETRYABLE,
    TERMINAL,
    Status,
    can_transition,
    is_valid_path,
    sources_of,
)

S = Status
EXPECTED = {
    (S.PENDING, S.QUEUED), (S.PENDING, S.SCHEDULED), (S.PENDING, S.CANCELLED), (S.PENDING, S.SKIPPED),
    (S.SCHEDULED, S.QUEUED), (S.SCHEDULED, S.CANCELLED),
    (S.QUEUED, S.RUNNING), (S.QUEUED, S.CANCELLED), (S.QUEUED, S.SKIPPED),
    (S.RUNNING, S.PASSED), (S.RUNNING, S.FAILED), (S.RUNNING, S.ERROR), (S.RUNNING, S.TIMEOUT),
    (S.RUNNING, S.CANCELLED), (S.RUNNING, S.PAUSED), (S.RUNNING, S.SKIPPED), (S.RUNNING, S.ABORTED),
    (S.RUNNING, S.QUEUED),
    (S.PAUSED, S.RUNNING), (S.PAUSED, S.PASSED), (S.PAUSED, S.FAILED), (S.PAUSED, S.CANCELLED),
    (S.PAUSED, S.TIMEOUT),
    (S.FAILED, S.RETRYING), (S.ERROR, S.RETRYING), (S.TIMEOUT, S.RETRYING),
}  # fmt: skip


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(Status, Status)))
def test_every_pair_matches_the_design_table(src: Status, dst: Status) -> None:
    assert can_transition(src, dst) == ((src, dst) in EXPECTED)


def test_terminal_statuses_have_no_way_out() -> None:
    assert TERMINAL == {S.PASSED, S.SKIPPED, S.CANCELLED, S.RETRYING, S.ABORTED}
    for status in TERMINAL:
        assert ALLOWED[status] == frozenset()


def test_failed_error_timeout_only_lead_to_retrying() -> None:
    for status in RETRYABLE:
        assert ALLOWED[status] == {S.RETRYING}


def test_finished_and_active_partition_the_statuses() -> None:
    assert FINISHED | ACTIVE == set(Status)
    assert not FINISHED & ACTIVE


def test_sources_of_running() -> None:
    assert sources_of(S.RUNNING) == {S.QUEUED, S.PAUSED}


def test_valid_paths() -> None:
    assert is_valid_path([S.QUEUED, S.RUNNING, S.QUEUED, S.RUNNING, S.PASSED])
    assert not is_valid_path([S.QUEUED, S.PASSED])
    assert is_valid_path([S.QUEUED])
